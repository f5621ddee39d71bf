# Fidelity tests: engram-model against the independent Python reference (tools/reference/),
# one ctest per case so they run in parallel. Debian's interpreter has numpy and torch.
set(ENGRAM_PYTHON /usr/bin/python3)
set(ENGRAM_GOLDEN_CASES n2_h1_f32 n3_h4_bf16table n4_h8_f16table fp8_table fp8_h8_bf16
    bf16_backbone_k3 hc4 hc4_fp8_bf16 compress compress_vocab_gap layout wrap_multipliers eps selfcheck)
foreach(c ${ENGRAM_GOLDEN_CASES})
  add_test(NAME golden.fidelity.${c}
           COMMAND ${ENGRAM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/golden/fidelity_test.py
                   --engram-model $<TARGET_FILE:engram-model> --workdir ${CMAKE_BINARY_DIR}/golden --case ${c})
  set_tests_properties(golden.fidelity.${c} PROPERTIES TIMEOUT 300 LABELS golden)
endforeach()
add_test(NAME golden.reference_unit
         COMMAND ${ENGRAM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/golden/reference_unit_test.py)
add_test(NAME golden.harness_selftest
         COMMAND ${ENGRAM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/golden/fidelity_test.py --harness-selftest
                 --workdir ${CMAKE_BINARY_DIR}/golden-harness)
set_tests_properties(golden.reference_unit golden.harness_selftest PROPERTIES TIMEOUT 300 LABELS golden)

# Product-key memory (DESIGN §2.4): engram-model against tools/reference/pkm_ref.py, one ctest
# per case; the reference against a torch re-statement of the published module; the harness
# against a stand-in tool with injected bugs.
set(ENGRAM_PKM_GOLDEN_CASES shared_swilu_f32 perlayer_vproj_gated_bf16 noproj_knn1_f16
    vproj_vdim_d_f32 fp8_swilu_knn_eq_n bf16_backbone engram_pkm selfcheck)
foreach(c ${ENGRAM_PKM_GOLDEN_CASES})
  add_test(NAME golden.pkm_fidelity.${c}
           COMMAND ${ENGRAM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/golden/pkm_fidelity_test.py
                   --engram-model $<TARGET_FILE:engram-model> --workdir ${CMAKE_BINARY_DIR}/golden-pkm --case ${c})
  set_tests_properties(golden.pkm_fidelity.${c} PROPERTIES TIMEOUT 300 LABELS golden)
endforeach()
add_test(NAME golden.pkm_reference_selftest
         COMMAND ${ENGRAM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/golden/pkm_fidelity_test.py --reference-selftest)
add_test(NAME golden.pkm_harness_selftest
         COMMAND ${ENGRAM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/golden/pkm_fidelity_test.py --harness-selftest
                 --workdir ${CMAKE_BINARY_DIR}/golden-pkm-harness)
set_tests_properties(golden.pkm_reference_selftest golden.pkm_harness_selftest PROPERTIES TIMEOUT 600 LABELS golden)
