// What every program prints for --version: the project version (CMake's project(VERSION)) and
// the git revision it was built from. Defined in the bulkhead_version library, whose generated
// part changes with the revision; only what prints a version links it.
#pragma once

#include <string>
#include <string_view>

namespace bulkhead {

// `git describe --always --dirty` of the source tree at build time ("49db595",
// "v0.2.0-2-g49db595-dirty"), or the CMake cache variable BULKHEAD_GIT_REVISION (default
// "unknown") when the tree is not a git work tree (a release tarball, a Debian source package).
std::string_view gitRevision();

// The project version, CMake's project(VERSION) ("0.2.0"): what an agent reports in Hello and
// its status. Only the bulkhead_version library is compiled with it, so a version bump rebuilds
// one file, not the project.
std::string_view projectVersion();

// "PROGRAM VERSION (git REVISION)", e.g. "bulkhead 0.2.0 (git 49db595)".
std::string versionLine(std::string_view program);

}  // namespace bulkhead
