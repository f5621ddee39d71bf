// UTF-8 and Unicode helpers shared by the tokenizer and the Engram compressed-id table.
//
// Hugging Face tokenizers work on Rust `String`s, so every byte sequence they see is valid
// UTF-8, and their lossy decoding is Rust's `String::from_utf8_lossy`. Token ids, however, can
// decode to arbitrary bytes (a byte-level BPE token may hold half a character), so the server
// needs the same lossy rules in C++: one U+FFFD per "maximal subpart" of an ill-formed
// sequence, which is also what Python's `bytes.decode("utf-8", "replace")` does. The
// normalization and case helpers wrap utf8proc so that NFC/NFKC/NFD and the per-character
// mappings match the Rust crates the reference uses.
#ifndef ENGRAM_SERVER_TOKENIZER_UNICODE_H_
#define ENGRAM_SERVER_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace engram {

inline constexpr char32_t kReplacementChar = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// How the bytes at the start of a string form (or fail to form) one UTF-8 character.
enum class Utf8SeqKind {
  kValid,      // a whole, well-formed character
  kInvalid,    // an ill-formed prefix: replaced by one U+FFFD
  kTruncated,  // well-formed so far but the string ends: more bytes could complete it
};

struct Utf8Seq {
  size_t len;  // bytes consumed: the character, or the maximal ill-formed subpart (>= 1)
  Utf8SeqKind kind;
};

// Classifies the sequence starting at s[0]. Precondition: !s.empty().
Utf8Seq ScanUtf8(std::string_view s);

bool IsValidUtf8(std::string_view s);

// Rust `String::from_utf8_lossy` / Python `errors="replace"`: valid input is returned as is.
std::string Utf8Lossy(std::string_view bytes);

// Length of the longest prefix of `bytes` that ends on a character boundary, leaving out only
// a trailing sequence that is still a valid prefix of some character (one that later bytes may
// complete). Ill-formed bytes count as complete: no future byte can repair them.
size_t Utf8CompletePrefixLen(std::string_view bytes);

// Decodes the character at s[*pos] (which must be valid UTF-8) and advances *pos.
char32_t DecodeUtf8At(std::string_view s, size_t* pos);

void AppendUtf8(char32_t cp, std::string* out);

// Unicode White_Space property (what Rust's `char::is_whitespace` tests).
bool IsWhiteSpace(char32_t cp);

// General category Mark (Mn, Mc, Me): what HF's StripAccents removes (unicode-normalization's
// `is_combining_mark`).
bool IsCombiningMark(char32_t cp);

// Rust's `char::is_alphanumeric`-like test used by added-token `single_word` matching.
bool IsAlphanumeric(char32_t cp);

// Full per-character lowercase (Rust `char::to_lowercase`), appended to out.
void AppendLowercase(char32_t cp, std::string* out);

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };

// Precondition: s is valid UTF-8 (the result for invalid input is Utf8Lossy(s) normalized).
std::string Normalize(std::string_view s, NormalizationForm form);

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_UNICODE_H_
