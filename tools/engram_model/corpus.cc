// The training corpus of generated tokenizers, compiled into engram-model so `create` needs no
// data files at run time (and a deployed binary creates the same model as a source checkout).
// Each corpus/*.txt is a C++ raw string literal: its first line opens R"corpus( and its last
// line closes it; everything between is original text written for this project.
#include <string_view>
#include <vector>

#include "tools/engram_model/bpe_trainer.h"

namespace engram::tool {
namespace {

constexpr char kEnglish[] =
#include "tools/engram_model/corpus/english.txt"
    ;
constexpr char kCode[] =
#include "tools/engram_model/corpus/code.txt"
    ;
constexpr char kNumbers[] =
#include "tools/engram_model/corpus/numbers.txt"
    ;
constexpr char kEssays[] =
#include "tools/engram_model/corpus/essays.txt"
    ;
constexpr char kEuropean[] =
#include "tools/engram_model/corpus/european.txt"
    ;
constexpr char kMultilingual[] =
#include "tools/engram_model/corpus/multilingual.txt"
    ;

}  // namespace

std::vector<std::string_view> BuiltinCorpus() {
  return {std::string_view(kEnglish, sizeof kEnglish - 1),
          std::string_view(kCode, sizeof kCode - 1),
          std::string_view(kNumbers, sizeof kNumbers - 1),
          std::string_view(kEssays, sizeof kEssays - 1),
          std::string_view(kEuropean, sizeof kEuropean - 1),
          std::string_view(kMultilingual, sizeof kMultilingual - 1)};
}

}  // namespace engram::tool
