// Python `str` semantics on UTF-8 strings, for the chat-template engine (jinja_*.h).
//
// Chat templates are Jinja2 programs run by Python in Hugging Face transformers: a template's
// output depends on Python's rules for len(), slicing, strip() (which strips *Unicode*
// whitespace, including U+001C..U+001F and U+3000), split(), repr() of lists and floats, and
// json.dumps(). The engine must reproduce those rules byte for byte, so they live here, away
// from the template logic. Strings are UTF-8 and indexed by code point, as Python indexes them.
// Inputs must be valid UTF-8 (the engine makes every string valid when it enters).
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_PYSTR_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_PYSTR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace engram::jinja {

std::u32string ToU32(std::string_view utf8);
std::string FromU32(std::u32string_view s);
size_t CodePointCount(std::string_view utf8);

// str.isspace() of one character (also what Python's `\s` and strip() use).
bool PyIsSpace(char32_t c);

// str.strip/lstrip/rstrip(chars); chars = nullopt strips whitespace.
std::string PyStrip(std::string_view s, std::optional<std::string_view> chars, bool left,
                    bool right);
// str.split(sep, maxsplit) (sep = nullopt: runs of whitespace, empty strings dropped);
// rsplit when `from_right`. Precondition: sep is not empty (the caller reports ValueError).
std::vector<std::string> PySplit(std::string_view s, std::optional<std::string_view> sep,
                                 int64_t maxsplit, bool from_right = false);
std::vector<std::string> PySplitLines(std::string_view s, bool keepends);
// str.replace(old, new, count); count < 0 replaces all. An empty `old` inserts between code
// points, as Python does.
std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count);
// str.find / str.rfind / str.count in code points; find returns -1 when absent.
int64_t PyFind(std::string_view s, std::string_view sub, bool from_right = false);
int64_t PyCount(std::string_view s, std::string_view sub);

std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PyTitle(std::string_view s);
std::string PyCapitalize(std::string_view s);

enum class PyCharClass { kAlpha, kDigit, kAlnum, kSpace, kUpper, kLower };
// str.isalpha() etc. of a whole string (false for "", as Python).
bool PyIsClass(std::string_view s, PyCharClass cls);

// repr() of a str: quotes chosen as Python chooses them, escapes for the non-printable.
std::string PyRepr(std::string_view s);
// repr() of a float: the shortest round-tripping digits, exponent form when the decimal
// exponent is < -4 or >= 16 ("1e-05", "1e+16"), ".0" on integral values, "inf", "nan".
std::string PyFloatRepr(double d);
// json.dumps of a str: escapes ", \, \n, \r, \t, \b, \f and other C0 controls as \u00XX;
// non-ASCII as \uXXXX (UTF-16 surrogate pairs above U+FFFF) only when ensure_ascii.
std::string PyJsonString(std::string_view s, bool ensure_ascii);

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_PYSTR_H_
