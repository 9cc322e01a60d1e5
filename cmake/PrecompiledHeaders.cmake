# Precompiled headers, for build time (CI's time is mostly build time on two cores). Most of a
# translation unit's time here is the same headers parsed again: the generated
# operator.grpc.pb.h alone is 6 s of gcc's time, the 14 #include lines of
# controller/rpc/operator_service.cc 12 s of its 36 s.
#
# In every target that uses the generated protocol (links bulkhead_proto, directly or through
# another of our libraries), the files that include the protocol or gRPC (directly or through
# the project's headers) reuse one precompiled header of the protocol, gRPC, protobuf, abseil,
# spdlog, fmt and nlohmann/json: product code the one of bulkhead_pch (made at the top level,
# with its flags), test code the one of bulkhead_test_pch (made in tests/, with the test code's
# own optimisation flags, plus GoogleTest). Fuzz targets keep their own flags and build
# without. Each file still includes what it uses: a precompiled header only saves parsing, and
# the layering check (scripts/check_layers.py) reads the #include lines. gcc checks that a
# precompiled header fits the file's flags (-Winvalid-pch, an error with BULKHEAD_WERROR).
# BULKHEAD_PCH=OFF builds without.
option(BULKHEAD_PCH "Precompiled headers for the targets using the generated protocol" ON)

set(BULKHEAD_PCH_HEADERS
  <string> <vector> <map> <memory> <functional> <chrono> <filesystem> <optional> <mutex>
  <absl/status/status.h> <absl/status/statusor.h> <fmt/format.h> <spdlog/spdlog.h>
  <nlohmann/json.hpp> <grpcpp/grpcpp.h>
  <bulkhead/v1/agent.grpc.pb.h> <bulkhead/v1/containment.grpc.pb.h>
  <bulkhead/v1/enrollment.grpc.pb.h> <bulkhead/v1/incidents.grpc.pb.h>
  <bulkhead/v1/operator.grpc.pb.h> <bulkhead/v1/replica.grpc.pb.h>
  <bulkhead/v1/signals.grpc.pb.h> <bulkhead/v1/tenants.grpc.pb.h>)

# bulkhead_pch_holder(NAME [HEADERS...] [LIBS...]): an object library that only compiles the
# precompiled header of BULKHEAD_PCH_HEADERS and HEADERS (with what they need from LIBS besides
# the protocol's own), with the compile options of the directory where it is called.
# bulkhead_apply_pch() points the targets of that directory's kind at it.
function(bulkhead_pch_holder name)
  if(NOT BULKHEAD_PCH)
    return()
  endif()
  cmake_parse_arguments(P "" "" "HEADERS;LIBS" ${ARGN})
  set(anchor ${CMAKE_CURRENT_BINARY_DIR}/${name}.cc)
  file(CONFIGURE OUTPUT ${anchor} CONTENT "// The precompiled header's own unit.\n")
  add_library(${name} OBJECT ${anchor})
  set(libs bulkhead_proto_grpc absl::status absl::statusor spdlog::spdlog fmt::fmt
      nlohmann_json::nlohmann_json ${P_LIBS})
  target_link_libraries(${name} PRIVATE ${libs})
  bulkhead_target_defaults(${name})
  target_precompile_headers(${name} PRIVATE ${BULKHEAD_PCH_HEADERS} ${P_HEADERS})
  # gcc uses a precompiled header only where every macro defined when it was made is defined
  # the same way (-pthread's _REENTRANT, spdlog's SPDLOG_COMPILED_LIB): each target reusing it
  # gets the compile definitions and options of these libraries, not their link.
  set_property(TARGET ${name} PROPERTY BULKHEAD_PCH_LIBS ${libs})
endfunction()

# _bulkhead_reuse_pch(TARGET HOLDER): TARGET's files that reach the protocol compile with
# HOLDER's precompiled header. The others skip it: loading the 450 MB header costs gcc about 2 s,
# more than such a file takes without it.
function(_bulkhead_reuse_pch target holder)
  get_target_property(sources ${target} SOURCES)
  get_target_property(dir ${target} SOURCE_DIR)
  set(reaching 0)
  foreach(source IN LISTS sources)
    cmake_path(ABSOLUTE_PATH source BASE_DIRECTORY ${dir})
    if(NOT source MATCHES "\\.cc$" OR NOT EXISTS ${source})
      continue()
    endif()
    _bulkhead_reaches_protocol(${source} reaches)
    if(reaches)
      math(EXPR reaching "${reaching} + 1")
    else()
      set_source_files_properties(${source} TARGET_DIRECTORY ${target}
                                  PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
    endif()
  endforeach()
  if(reaching EQUAL 0)
    return()
  endif()
  target_precompile_headers(${target} REUSE_FROM ${holder})
  get_target_property(libs ${holder} BULKHEAD_PCH_LIBS)
  foreach(lib IN LISTS libs)
    target_compile_definitions(${target} PRIVATE
      $<TARGET_PROPERTY:${lib},INTERFACE_COMPILE_DEFINITIONS>)
    target_compile_options(${target} PRIVATE $<TARGET_PROPERTY:${lib},INTERFACE_COMPILE_OPTIONS>)
  endforeach()
endfunction()

# _bulkhead_uses_proto(TARGET OUT): whether TARGET links bulkhead_proto, directly or through
# targets of this project. Remembered per target.
function(_bulkhead_uses_proto target out)
  get_property(known GLOBAL PROPERTY _bulkhead_pch_${target} SET)
  if(known)
    get_property(result GLOBAL PROPERTY _bulkhead_pch_${target})
    set(${out} ${result} PARENT_SCOPE)
    return()
  endif()
  set(result FALSE)
  if(target STREQUAL "bulkhead_proto")
    set(result TRUE)
  else()
    get_target_property(imported ${target} IMPORTED)
    if(NOT imported)
      get_target_property(libs ${target} LINK_LIBRARIES)
      foreach(lib IN LISTS libs)
        if(TARGET ${lib})
          _bulkhead_uses_proto(${lib} uses)
          if(uses)
            set(result TRUE)
            break()
          endif()
        endif()
      endforeach()
    endif()
  endif()
  set_property(GLOBAL PROPERTY _bulkhead_pch_${target} ${result})
  set(${out} ${result} PARENT_SCOPE)
endfunction()

# _bulkhead_reaches_protocol(FILE OUT): whether FILE includes a generated protocol header or
# gRPC's, directly or through the project's own headers (root-relative #include "dir/x.h").
# Remembered per file.
function(_bulkhead_reaches_protocol file out)
  get_property(known GLOBAL PROPERTY _bulkhead_reaches_${file} SET)
  if(known)
    get_property(result GLOBAL PROPERTY _bulkhead_reaches_${file})
    set(${out} ${result} PARENT_SCOPE)
    return()
  endif()
  # Marked first, so an include cycle ends.
  set_property(GLOBAL PROPERTY _bulkhead_reaches_${file} FALSE)
  set(result FALSE)
  file(STRINGS ${file} includes REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
  foreach(line IN LISTS includes)
    if(line MATCHES "[<\"](bulkhead/v1/|grpcpp/)")
      set(result TRUE)
      break()
    endif()
    if(NOT line MATCHES "\"([^\"]+)\"")
      continue()
    endif()
    set(header ${PROJECT_SOURCE_DIR}/${CMAKE_MATCH_1})
    if(EXISTS ${header})
      _bulkhead_reaches_protocol(${header} reaches)
      if(reaches)
        set(result TRUE)
        break()
      endif()
    endif()
  endforeach()
  set_property(GLOBAL PROPERTY _bulkhead_reaches_${file} ${result})
  set(${out} ${result} PARENT_SCOPE)
endfunction()

# _bulkhead_targets_under(DIR OUT): the targets defined in DIR and its subdirectories.
function(_bulkhead_targets_under dir out)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    _bulkhead_targets_under(${sub} more)
    list(APPEND targets ${more})
  endforeach()
  set(${out} ${targets} PARENT_SCOPE)
endfunction()

# bulkhead_apply_pch(): called once, after every target is defined (the top-level
# CMakeLists.txt). Test code (tests/) reuses bulkhead_test_pch, the rest bulkhead_pch.
function(bulkhead_apply_pch)
  if(NOT BULKHEAD_PCH)
    return()
  endif()
  _bulkhead_targets_under(${PROJECT_SOURCE_DIR} targets)
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    get_target_property(dir ${target} SOURCE_DIR)
    if(NOT type MATCHES "^(EXECUTABLE|STATIC_LIBRARY|SHARED_LIBRARY|OBJECT_LIBRARY)$"
       OR target MATCHES "^bulkhead(_test)?_pch$" OR dir MATCHES "^${PROJECT_SOURCE_DIR}/fuzz")
      continue()
    endif()
    _bulkhead_uses_proto(${target} uses)
    if(NOT uses OR target MATCHES "^bulkhead_proto(_grpc)?$")
      continue()
    endif()
    if(dir MATCHES "^${PROJECT_SOURCE_DIR}/tests(/|$)")
      if(TARGET bulkhead_test_pch)
        _bulkhead_reuse_pch(${target} bulkhead_test_pch)
      endif()
    else()
      _bulkhead_reuse_pch(${target} bulkhead_pch)
    endif()
  endforeach()
endfunction()
