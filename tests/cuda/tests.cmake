# CUDA kernel tests (issue 6). row_math_shared_test checks the host+device math on the CPU and
# runs in every build. The others run each kernel of kernels/cuda and the CPU reference on
# random inputs and compare with a tolerance derived in the test; without a device they call
# GTEST_SKIP with the probe's reason, so ctest lists them as skipped. All carry the label "cuda".
add_executable(row_math_shared_test ${CMAKE_CURRENT_SOURCE_DIR}/cuda/row_math_shared_test.cc)
target_link_libraries(row_math_shared_test PRIVATE engram_engine GTest::gtest GTest::gtest_main)
gtest_discover_tests(row_math_shared_test TEST_PREFIX "cuda." DISCOVERY_TIMEOUT 60
                     PROPERTIES LABELS "cuda")

if(ENGRAM_HAVE_CUDA)
  foreach(name elementwise_ops_test paged_attention_test engram_gate_conv_test sampling_test
               gather_row_cache_test gemm_test branch_ops_test cuda_backend_test cuda_model_test)
    add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/cuda/${name}.cc)
    target_link_libraries(${name} PRIVATE engram_cuda_ops engram_engine GTest::gtest
                          GTest::gtest_main)
    gtest_discover_tests(${name} TEST_PREFIX "cuda." DISCOVERY_TIMEOUT 60
                         PROPERTIES LABELS "cuda")
  endforeach()
  # cuda/product_key_ops_test.cc shares its file name with the CPU unit test of the same ops
  # (unit/product_key_ops_test.cc), so its target is named after the folder.
  add_executable(cuda_product_key_ops_test ${CMAKE_CURRENT_SOURCE_DIR}/cuda/product_key_ops_test.cc)
  target_link_libraries(cuda_product_key_ops_test PRIVATE engram_cuda_ops engram_engine GTest::gtest
                        GTest::gtest_main)
  gtest_discover_tests(cuda_product_key_ops_test TEST_PREFIX "cuda." DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS "cuda")
  # cuda_model_test creates tiny models with the engram-model tool (tests/unit/tool_runner.h),
  # wired as tests/CMakeLists.txt wires the unit tests.
  target_compile_definitions(cuda_model_test PRIVATE
                             ENGRAM_MODEL_TOOL="$<TARGET_FILE:engram-model>")
  if(TARGET engram-model)
    add_dependencies(cuda_model_test engram-model)
  endif()

  # The two host -> device paths of Engram rows (staged copy vs zero-copy kernel), in GB/s.
  # scripts/bench-gpu.sh runs it at full size; ctest runs a small pass that prints and exits 0,
  # on a machine without a device too.
  add_executable(gather_paths_bench ${CMAKE_CURRENT_SOURCE_DIR}/cuda/gather_paths_bench.cu)
  set_target_properties(gather_paths_bench PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                        CUDA_RUNTIME_LIBRARY Static CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
  target_link_libraries(gather_paths_bench PRIVATE engram_cuda_ops engram_kernels)
  set(gather_bench_warnings -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter)
  if(ENGRAM_WERROR)
    list(APPEND gather_bench_warnings -Werror=all-warnings -Xcompiler=-Werror)
  endif()
  target_compile_options(gather_paths_bench PRIVATE
                         $<$<COMPILE_LANGUAGE:CUDA>:${gather_bench_warnings}>)
  add_test(NAME bench.gather_paths_smoke
           COMMAND gather_paths_bench --table-mb 16 --rows 4096 --iters 2)
  set_tests_properties(bench.gather_paths_smoke PROPERTIES LABELS "bench;cuda" TIMEOUT 120
                       FAIL_REGULAR_EXPRESSION "mismatch")
endif()
