# engram-client end to end (issue 5): the client binary and the Python example client
# (client/python/generate_example.py) against real engramd processes on loopback ports, driven by
# client_e2e_test.py. One ctest per group, each with its own server, so ctest -j runs them side
# by side; label "client". Included from tests/CMakeLists.txt.
if(NOT TARGET engram-client OR NOT TARGET engramd OR NOT TARGET engram-model
   OR NOT EXISTS /usr/bin/python3)
  return()
endif()

set(client_e2e_args
  --client $<TARGET_FILE:engram-client> --engramd $<TARGET_FILE:engramd>
  --engram-model $<TARGET_FILE:engram-model>)
# The Python checks (the example client, the chat's Tokenize comparison) need the generated
# stubs and Debian's python3-grpcio; without them the driver skips those checks and says so.
if(ENGRAM_PROTO_PY_DIR AND TARGET engram_proto_py)
  list(APPEND client_e2e_args --proto-py ${ENGRAM_PROTO_PY_DIR}
       --example ${CMAKE_SOURCE_DIR}/client/python/generate_example.py)
endif()

foreach(group main queue auth)
  add_test(NAME client.e2e.${group}
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/client/client_e2e_test.py
                   ${client_e2e_args} --group ${group}
                   --workdir ${CMAKE_CURRENT_BINARY_DIR}/tmp/client_e2e)
  set_tests_properties(client.e2e.${group} PROPERTIES LABELS client TIMEOUT 180)
endforeach()
