# Integration tests (issue 4): real engramd processes on loopback ports, called by a C++ gRPC
# client (server_test.cc) and by a Python one (python_client_test.py, Debian's python3-grpcio
# with the stubs proto/ generates). Included from tests/CMakeLists.txt.
if(NOT TARGET engramd OR NOT TARGET engram_proto)
  return()
endif()

# grpc.health.v1 client stubs: Debian ships neither the .proto nor generated code for it.
find_package(Protobuf REQUIRED)
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
set(itest_health_proto ${CMAKE_SOURCE_DIR}/tests/integration/health.proto)
set(itest_gen ${CMAKE_CURRENT_BINARY_DIR}/integration_gen)
set(itest_health_out
  ${itest_gen}/tests/integration/health.pb.cc ${itest_gen}/tests/integration/health.pb.h
  ${itest_gen}/tests/integration/health.grpc.pb.cc ${itest_gen}/tests/integration/health.grpc.pb.h)
add_custom_command(
  OUTPUT ${itest_health_out}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${itest_gen}
  COMMAND protobuf::protoc --proto_path=${CMAKE_SOURCE_DIR} --cpp_out=${itest_gen}
          --grpc_out=${itest_gen} --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} ${itest_health_proto}
  DEPENDS ${itest_health_proto}
  COMMENT "protoc: tests/integration/health.proto (C++)")
add_library(engram_itest_health_proto STATIC ${itest_gen}/tests/integration/health.pb.cc
            ${itest_gen}/tests/integration/health.grpc.pb.cc)
target_include_directories(engram_itest_health_proto SYSTEM PUBLIC ${itest_gen})
target_link_libraries(engram_itest_health_proto PUBLIC engram_proto)
# Generated code is not ours to warn about.
target_compile_options(engram_itest_health_proto PRIVATE -w)

add_executable(engramd_server_test ${CMAKE_CURRENT_SOURCE_DIR}/integration/server_test.cc)
# engram_tokenizer: the test decodes the streamed ids itself to check the streamed text.
target_link_libraries(engramd_server_test PRIVATE engram_proto engram_itest_health_proto
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
