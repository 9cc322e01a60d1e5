// Text that came from outside (an agent, an operator, a host's files) shown on a terminal or
// written to a log line: what counts as non-printable, and the one escaping used everywhere
// (CLI tables and messages, the daemons' text log).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace bulkhead {

// Non-printable: C0 controls (U+0000..U+001F: newline, tab, ESC...), DEL (U+007F), C1
// controls (U+0080..U+009F), the line and paragraph separators (U+2028, U+2029), the
// bidirectional embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069), and any
// byte that is not part of valid UTF-8. Everything else (spaces, accents, CJK) is printable.
struct NonPrintable {
  size_t offset = 0;  // byte offset of the first non-printable character
  std::string shown;  // that character escaped, e.g. "\n", "\x1b", "\u202e", "\xff"
};
std::optional<NonPrintable> findNonPrintable(std::string_view text);

// `text` with every non-printable character written as a visible escape: "\n", "\r", "\t",
// "\xNN" for other C0 controls, DEL and bytes that are not valid UTF-8, "\uNNNN" for C1 controls,
// separators and bidirectional controls. Printable text (backslashes included) is unchanged.
std::string escapeNonPrintable(std::string_view text);

}  // namespace bulkhead
