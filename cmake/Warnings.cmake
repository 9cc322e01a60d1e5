# Project-wide warning flags; CI builds with -DBULKHEAD_WERROR=ON.
set(BULKHEAD_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
    -Wcast-align -Woverloaded-virtual -Wformat=2 -Wimplicit-fallthrough
    -Wno-missing-field-initializers)  # designated initializers may omit defaulted members
if(BULKHEAD_WERROR)
  list(APPEND BULKHEAD_WARNINGS -Werror)
endif()

# bulkhead_target_defaults(target): our warnings apply to our code only, never to generated code.
function(bulkhead_target_defaults target)
  target_compile_options(${target} PRIVATE ${BULKHEAD_WARNINGS})
endfunction()
