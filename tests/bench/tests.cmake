# Benchmarks (Google Benchmark). They print figures and never pass or fail on time; ctest only
# runs a smoke pass of each so the binaries stay working.
find_package(benchmark REQUIRED)

add_executable(gather_bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/gather_bench.cc)
target_link_libraries(gather_bench PRIVATE engram_engine benchmark::benchmark)
add_test(NAME bench.gather_smoke
         COMMAND gather_bench --table_mb=4 --table_dir=${CMAKE_CURRENT_BINARY_DIR}/tmp/gather-bench
                 "--benchmark_filter=(/w64/b1024/|hit_rate/lfu/1%)" --benchmark_min_time=0.01)
set_tests_properties(bench.gather_smoke PROPERTIES LABELS "bench" TIMEOUT 120)

# Offline engine vs the same engine behind gRPC (issue 4's serving benchmark).
if(TARGET engram_api)
  add_executable(serving_bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/serving_bench.cc
                               ${CMAKE_SOURCE_DIR}/tools/engram_model/flags.cc)
  target_link_libraries(serving_bench PRIVATE engram_api engram_flags PkgConfig::JEMALLOC)
  set(serving_smoke_dir ${CMAKE_CURRENT_BINARY_DIR}/tmp/serving-bench-model)
  add_test(NAME bench.serving_smoke
           COMMAND sh -c "rm -rf '${serving_smoke_dir}' && '$<TARGET_FILE:engram-model>' create --preset tiny --out '${serving_smoke_dir}' >/dev/null && '$<TARGET_FILE:serving_bench>' --model '${serving_smoke_dir}' --num-seqs 6 --concurrency 3 --prompt-len 5,40 --output-len 4,12")
  set_tests_properties(bench.serving_smoke PROPERTIES LABELS "bench" TIMEOUT 120
                       FAIL_REGULAR_EXPRESSION "mismatch")
endif()

# The offline benchmark of the memory-tier issue (engram-model bench), every kind of
# configuration once on the tiny model.
set(model_bench_dir ${CMAKE_CURRENT_BINARY_DIR}/tmp/model-bench-model)
add_test(NAME bench.model_smoke
         COMMAND sh -c "rm -rf '${model_bench_dir}' && '$<TARGET_FILE:engram-model>' create --preset tiny --out '${model_bench_dir}' >/dev/null && '$<TARGET_FILE:engram-model>' bench --model '${model_bench_dir}' --num-seqs 4 --prompt-len 5,40 --output-len 4,12 --configs dense,ram,ram-sync,ssd,ram-staged,ram-zero-copy,ram-cached,dense-eager")
set_tests_properties(bench.model_smoke PROPERTIES LABELS "bench" TIMEOUT 120
                     PASS_REGULAR_EXPRESSION "dense-eager +[0-9.]+ +[0-9]+ +[0-9.]+")
