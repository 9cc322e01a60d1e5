#include "common/version.h"

namespace bulkhead {

std::string_view projectVersion() { return BULKHEAD_VERSION; }

std::string versionLine(std::string_view program) {
  std::string line(program);
  line += " ";
  line += projectVersion();
  line += " (git ";
  line += gitRevision();
  line += ")";
  return line;
}

}  // namespace bulkhead
