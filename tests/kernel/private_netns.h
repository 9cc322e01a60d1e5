// Safety rail for root-labelled kernel tests: every test binary links private_netns_main.cc,
// whose main() moves the whole process into a fresh network namespace BEFORE anything else
// runs (before any thread exists, so every later thread inherits it), and refuses to run at
// all if that fails. Tests start with BULKHEAD_REQUIRE_PRIVATE_NETNS(), which skips them when
// not root (and therefore not isolated).
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace bulkhead::test {

// Empty when the process runs in its own network namespace with loopback up; otherwise why
// the kernel tests are skipped.
const std::string& privateNetnsSkipReason();

// Call first thing in main(), before any thread or socket exists. As root: unshare the network
// namespace, check /proc/self/ns/net changed, bring up lo; false (after printing why) if any
// step fails: the caller must then exit non-zero. Not root: true, with a skip reason set.
bool enterPrivateNetns();

}  // namespace bulkhead::test

#define BULKHEAD_REQUIRE_PRIVATE_NETNS()                          \
  do {                                                            \
    if (!::bulkhead::test::privateNetnsSkipReason().empty()) {    \
      GTEST_SKIP() << ::bulkhead::test::privateNetnsSkipReason(); \
    }                                                             \
  } while (0)
