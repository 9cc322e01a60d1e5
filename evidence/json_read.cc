#include "evidence/json_read.h"

#include "common/format.h"

namespace bulkhead::evidence {

namespace {

// Length of the valid UTF-8 sequence at text[i] (1 to 4), or 0 if the bytes there are not one.
size_t utf8Length(std::string_view text, size_t i) {
  const auto b = static_cast<unsigned char>(text[i]);
  size_t n = 0;
  uint32_t cp = 0;
  if (b < 0x80) return 1;
  if ((b & 0xe0) == 0xc0) {
    n = 2;
    cp = b & 0x1f;
  } else if ((b & 0xf0) == 0xe0) {
    n = 3;
    cp = b & 0x0f;
  } else if ((b & 0xf8) == 0xf0) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(text[i + k]);
    if ((c & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (c & 0x3f);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

std::string boundedText(std::string_view text, size_t max_bytes, bool escape_controls) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = utf8Length(text, i);
    const auto b = static_cast<unsigned char>(text[i]);
    std::string piece;
    if (n == 0 || (escape_controls && n == 1 && (b < 0x20 || b == 0x7f))) {
      piece = fmt::format("\\x{:02x}", b);
    } else {
      piece.assign(text.substr(i, n));
    }
    if (out.size() + piece.size() > max_bytes) break;
    out += piece;
    i += n == 0 ? 1 : n;
  }
  if (i < text.size()) out += fmt::format("...({} bytes more)", text.size() - i);
  return out;
}

}  // namespace bulkhead::evidence
