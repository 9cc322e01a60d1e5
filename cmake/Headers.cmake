# Include roots: a target exports only its own folder's headers, so a source that includes a
# header of a target it does not link fails to compile ("No such file"). Includes keep their
# spelling from the repository root ("agent/core/config.h", "common/tls/pki.h").
#
# A folder's root is ${PROJECT_BINARY_DIR}/include/<folder with / as _>/, holding <folder>/<h>
# for each header <folder>/<h> of the source tree (that folder only, not its subfolders: the
# root of common/ has no common/tls/). Each is a one-line forwarding header that includes the
# source file by its absolute path, so diagnostics, debug information and clang-tidy's line
# filter name the file in the source tree. The roots are made at configure time; a header added
# to or removed from a folder re-runs the configuration (CONFIGURE_DEPENDS).

# _bulkhead_header_root(folder out_var): makes folder's root and sets out_var to its path.
function(_bulkhead_header_root folder out_var)
  string(REPLACE "/" "_" name "${folder}")
  set(root ${PROJECT_BINARY_DIR}/include/${name})
  file(GLOB headers CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${folder}/*.h)
  if(NOT headers)
    message(FATAL_ERROR "bulkhead include root: no headers in ${folder}/")
  endif()
  set(wanted)
  foreach(header IN LISTS headers)
    get_filename_component(file ${header} NAME)
    list(APPEND wanted ${root}/${folder}/${file})
    # Written only when its content changes (file(CONFIGURE)), so a re-configure rebuilds nothing.
    file(CONFIGURE OUTPUT ${root}/${folder}/${file}
         CONTENT "#include \"@header@\"  // forwards to the source tree\n" @ONLY)
  endforeach()
  file(GLOB present ${root}/${folder}/*)
  foreach(stale IN LISTS present)
    if(NOT stale IN_LIST wanted)
      file(REMOVE ${stale})
    endif()
  endforeach()
  set(${out_var} ${root} PARENT_SCOPE)
endfunction()

# bulkhead_public_headers(target folder): target exports folder's headers (PUBLIC; INTERFACE for
# an interface library) to itself and to every target linking it.
function(bulkhead_public_headers target folder)
  _bulkhead_header_root(${folder} root)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")
    target_include_directories(${target} INTERFACE ${root})
  else()
    target_include_directories(${target} PUBLIC ${root})
  endif()
endfunction()

# bulkhead_private_headers(target folder...): target (a test, benchmark or fuzz program) sees
# the headers of each folder for itself only (its harness headers).
function(bulkhead_private_headers target)
  foreach(folder IN LISTS ARGN)
    _bulkhead_header_root(${folder} root)
    target_include_directories(${target} PRIVATE ${root})
  endforeach()
endfunction()
