// The GPT-2 byte-to-character map that byte-level BPE (GPT-2, Llama 3, Qwen, DeepSeek-V3) uses.
//
// Byte-level BPE models never see raw bytes: every byte of the text is first replaced by one
// printable character (space → "Ġ", newline → "Ċ", 0xE4 → "ä", ...) so that vocab entries
// and merges are plain strings. Decoding inverts the map. The map is fixed by GPT-2's
// `bytes_to_unicode()`; any other assignment would give different ids for the same vocab.
#ifndef ENGRAM_SERVER_TOKENIZER_BYTE_LEVEL_H_
#define ENGRAM_SERVER_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace engram {

// UTF-8 of the character standing for byte b.
std::string_view ByteLevelChar(uint8_t b);

// Appends the byte-level form of every byte of `bytes` to *out.
void AppendByteLevel(std::string_view bytes, std::string* out);

// Appends the bytes a byte-level token stands for and returns true; returns false (appending
// nothing) when some character of `token` is not a byte-level character, as for added tokens
// such as "<|im_start|>" with non-mapped characters.
bool AppendByteLevelDecoded(std::string_view token, std::string* out);

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_BYTE_LEVEL_H_
