// `bulkhead-agent enroll --token TOKEN [--host-id ID] [--identity DIR]`: makes this server's
// key here, sends a certificate request with a join token (common/tls/enrollment_client.h) and
// writes the identity directory the agent then starts with. Nothing is written unless the
// controller issued a certificate that checks out; an existing identity is never overwritten.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace bulkhead::agent {

// `args`: argv[2..] (after "enroll"). Exit status: 0 enrolled, 1 refused or unreachable (one
// line on `err`), 2 a usage error (a malformed token, a bad flag).
int enrollMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace bulkhead::agent
