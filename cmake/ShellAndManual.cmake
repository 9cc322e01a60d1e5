# Shell completion and manual pages, generated at build time from the programs themselves (so
# they never drift from what the programs parse); `cmake --install` (and so the Debian
# packages) puts them where bash-completion and man look:
#   completion/bulkhead, completion/bulkhead-agent, completion/bulkhead-controller
#       `PROGRAM completion bash`   -> /usr/share/bash-completion/completions/PROGRAM
#   man/bulkhead.1 (from `bulkhead --help-all`: every command with its options),
#   man/bulkhead-agent.8, man/bulkhead-controller.8 (from --help)
#       help2man, target `man` (part of ALL when help2man is installed)
#                                   -> /usr/share/man/man{1,8}/
include(GNUInstallDirs)

set(BULKHEAD_COMPLETIONS)
foreach(program bulkhead bulkhead-agent bulkhead-controller)
  set(out ${PROJECT_BINARY_DIR}/completion/${program})
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/completion
    COMMAND sh -c "\"$1\" completion bash > \"$2.tmp\" && mv \"$2.tmp\" \"$2\""
            sh $<TARGET_FILE:${program}> ${out}
    DEPENDS ${program}
    COMMENT "bash completion of ${program}"
    VERBATIM)
  list(APPEND BULKHEAD_COMPLETIONS ${out})
endforeach()
add_custom_target(completion ALL DEPENDS ${BULKHEAD_COMPLETIONS})
install(FILES ${BULKHEAD_COMPLETIONS}
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/bash-completion/completions)

find_program(HELP2MAN help2man)
if(HELP2MAN)
  set(BULKHEAD_MAN_PAGES)
  # bulkhead_man_page(program section name help_option)
  function(bulkhead_man_page program section name help_option)
    set(out ${PROJECT_BINARY_DIR}/man/${program}.${section})
    add_custom_command(OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
      COMMAND ${HELP2MAN} --no-info --section=${section} --name=${name}
              --help-option=${help_option} --version-option=--version
              --output=${out} $<TARGET_FILE:${program}>
      DEPENDS ${program}
      COMMENT "manual page ${program}(${section})"
      VERBATIM)
    set(BULKHEAD_MAN_PAGES ${BULKHEAD_MAN_PAGES} ${out} PARENT_SCOPE)
  endfunction()
  bulkhead_man_page(bulkhead 1 "contain a compromised host: the operator command line"
                    --help-all)
  bulkhead_man_page(bulkhead-agent 8 "the bulkhead agent: enforces containment on its host"
                    --help)
  bulkhead_man_page(bulkhead-controller 8
                    "the bulkhead controller: containment state, audit and evidence of a fleet"
                    --help)
  add_custom_target(man ALL DEPENDS ${BULKHEAD_MAN_PAGES})
  install(FILES ${PROJECT_BINARY_DIR}/man/bulkhead.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  install(FILES ${PROJECT_BINARY_DIR}/man/bulkhead-agent.8
                ${PROJECT_BINARY_DIR}/man/bulkhead-controller.8
          DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
else()
  message(STATUS "help2man not found: no manual pages (scripts/install-deps.sh installs it)")
endif()
