# Benchmarks (Google Benchmark). They print figures and never pass or fail on time; ctest only
# runs a smoke pass of each so the binaries stay working.
find_package(benchmark REQUIRED)

add_executable(gather_bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/gather_bench.cc)
target_link_libraries(gather_bench PRIVATE engram_engine benchmark::benchmark)
add_test(NAME bench.gather_smoke
         COMMAND gather_bench --table_mb=4 --table_dir=${CMAKE_CURRENT_BINARY_DIR}/tmp/gather-bench
                 "--benchmark_filter=(/w64/b1024/|hit_rate/lfu/1%)" --benchmark_min_time=0.01)
set_tests_properties(bench.gather_smoke PROPERTIES LABELS "bench" TIMEOUT 120)
