# Integration tests (issue 4): real engramd processes on loopback ports, called by a C++ gRPC
# client (server_test.cc) and by a Python one (python_client_test.py, Debian's python3-grpcio
# with the stubs proto/ generates). Included from tests/CMakeLists.txt.
if(NOT TARGET engramd OR NOT TARGET engram_proto)
  return()
endif()

add_executable(engramd_server_test ${CMAKE_CURRENT_SOURCE_DIR}/integration/server_test.cc)
# engram_tokenizer: the test decodes the streamed ids itself to check the streamed text.
target_link_libraries(engramd_server_test PRIVATE engram_proto engram_health_proto
                      engram_tokenizer GTest::gtest GTest::gmock GTest::gtest_main Threads::Threads)
target_compile_definitions(engramd_server_test PRIVATE ENGRAMD_BIN="$<TARGET_FILE:engramd>"
                           ENGRAM_MODEL_TOOL="$<TARGET_FILE:engram-model>"
                           PROMTOOL="/usr/bin/promtool")
if(ENGRAM_SANITIZE)
  # The sanitizer runtime serves malloc there, so jemalloc is not engramd's allocator.
  target_compile_definitions(engramd_server_test PRIVATE ENGRAM_SANITIZED=1)
endif()
add_dependencies(engramd_server_test engramd engram-model)

# One ctest per suite: the tests of a suite share a server (or start their own in sequence), and
# the suites run in parallel under ctest -j.
set(itest_env "ENGRAM_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/tmp")
foreach(suite SharedServerTest QueueTest DrainTest AuthTest StartupTest)
  add_test(NAME integration.${suite}
           COMMAND engramd_server_test --gtest_filter=${suite}.*)
  set_tests_properties(integration.${suite} PROPERTIES LABELS integration TIMEOUT 180
                       ENVIRONMENT "${itest_env}")
endforeach()

if(ENGRAM_PROTO_PY_DIR AND TARGET engram_proto_py AND EXISTS /usr/bin/python3)
  add_test(NAME integration.python_client
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/python_client_test.py
                   --engramd $<TARGET_FILE:engramd> --engram-model $<TARGET_FILE:engram-model>
                   --proto-py ${ENGRAM_PROTO_PY_DIR}
                   --workdir ${CMAKE_CURRENT_BINARY_DIR}/tmp/python_client)
  set_tests_properties(integration.python_client PROPERTIES LABELS integration TIMEOUT 120)
endif()
