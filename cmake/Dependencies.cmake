# All dependencies come from Debian 12 packages (see .ci/install-deps).
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)          # CMake's FindProtobuf: Debian ships no protobuf config
find_package(gRPC CONFIG REQUIRED)       # gRPC::grpc++, gRPC::grpc_cpp_plugin
find_package(absl CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(fmt CONFIG REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS program_options)
find_package(OpenSSL REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(yaml-cpp CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(CURL REQUIRED)              # CURL::libcurl: the notifications' HTTPS and SMTP
find_package(PkgConfig REQUIRED)
pkg_check_modules(NFTABLES REQUIRED IMPORTED_TARGET libnftables)
pkg_check_modules(NL REQUIRED IMPORTED_TARGET libnl-3.0 libnl-route-3.0 libnl-nf-3.0)
# PkgConfig::HTTPLIB: the CrowdSec LAPI client and the HTTPS webhook listener (with OpenSSL)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# PkgConfig::PQXX (libpqxx 6.4, with libpq): the controller's PostgreSQL store
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx libpq)
# PkgConfig::TCMALLOC: the controller's allocator (gperftools' tcmalloc_minimal; controller/)
pkg_check_modules(TCMALLOC REQUIRED IMPORTED_TARGET libtcmalloc_minimal)
# prometheus-cpp::core: the controller's metrics (registry, text serializer); served by our own
# cpp-httplib listener, so prometheus-cpp's pull (civetweb) part is not used
find_package(prometheus-cpp CONFIG REQUIRED)
if(BULKHEAD_TESTS)
  find_package(GTest REQUIRED)
endif()
