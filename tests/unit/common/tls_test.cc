#include "common/tls/tls.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <memory>

namespace bulkhead {
namespace {

using SslCtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;
using SslPtr = std::unique_ptr<SSL, decltype(&SSL_free)>;

bool releasesBuffers(SSL_CTX* ctx) {
  SslPtr ssl(SSL_new(ctx), &SSL_free);
  EXPECT_NE(ssl, nullptr);
  return ssl != nullptr && (SSL_get_mode(ssl.get()) & SSL_MODE_RELEASE_BUFFERS) != 0;
}

// gRPC makes its SSL objects from contexts of its own, created before and after the call: both
// must come out releasing their buffers, and the contexts themselves stay as they were.
TEST(ReleaseIdleTlsBuffers, EverySslMadeAfterTheCallReleasesItsBuffersWhateverItsContext) {
  SslCtxPtr before(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free);
  ASSERT_NE(before, nullptr);
  ASSERT_FALSE(releasesBuffers(before.get()))
      << "OpenSSL's default changed: the test proves nothing";

  ASSERT_TRUE(releaseIdleTlsBuffersProcessWide().ok());
  ASSERT_TRUE(releaseIdleTlsBuffersProcessWide().ok());  // a second call is harmless

  SslCtxPtr after(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
  ASSERT_NE(after, nullptr);
  EXPECT_TRUE(releasesBuffers(before.get()));
  EXPECT_TRUE(releasesBuffers(after.get()));
  EXPECT_EQ(SSL_CTX_get_mode(before.get()) & SSL_MODE_RELEASE_BUFFERS, 0U);
}

}  // namespace
}  // namespace bulkhead
