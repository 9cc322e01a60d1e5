#include "common/version.h"

namespace bulkhead {

std::string versionLine(std::string_view program) {
  std::string line(program);
  line += " " BULKHEAD_VERSION " (git ";
  line += gitRevision();
  line += ")";
  return line;
}

}  // namespace bulkhead
