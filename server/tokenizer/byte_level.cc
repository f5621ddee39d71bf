// Tables for GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other
// 68 bytes to U+0100 + n in byte order.
#include "server/tokenizer/byte_level.h"

#include <array>

#include "server/tokenizer/unicode.h"

namespace engram {
namespace {

struct Tables {
  std::array<std::string, 256> byte_to_utf8;
  // Index: code point (all mapped characters are below U+0144); value: byte + 1, 0 = none.
  std::array<uint16_t, 0x144> cp_to_byte{};

  Tables() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      AppendUtf8(cp, &byte_to_utf8[b]);
      cp_to_byte[cp] = static_cast<uint16_t>(b + 1);
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

std::string_view ByteLevelChar(uint8_t b) { return GetTables().byte_to_utf8[b]; }

void AppendByteLevel(std::string_view bytes, std::string* out) {
  const Tables& t = GetTables();
  for (char c : bytes) out->append(t.byte_to_utf8[static_cast<uint8_t>(c)]);
}

bool AppendByteLevelDecoded(std::string_view token, std::string* out) {
  const Tables& t = GetTables();
  const size_t old_size = out->size();
  size_t i = 0;
  while (i < token.size()) {
    const Utf8Seq seq = ScanUtf8(token.substr(i));
    char32_t cp = 0x144;  // "not mapped"
    if (seq.kind == Utf8SeqKind::kValid) {
      size_t pos = i;
      cp = DecodeUtf8At(token, &pos);
    }
    if (cp >= t.cp_to_byte.size() || t.cp_to_byte[cp] == 0) {
      out->resize(old_size);
      return false;
    }
    out->push_back(static_cast<char>(t.cp_to_byte[cp] - 1));
    i += seq.len;
  }
  return true;
}

}  // namespace engram
