# Deployment files (deploy/, issue 7), each checked by the tool that consumes it where Debian 12
# packages one: promtool, a real Prometheus server, yamllint, systemd-analyze; python3 (+
# python3-yaml) checks what has no Debian tool (kustomize, Grafana, Docker). `ctest -L deploy`.
# Included from tests/CMakeLists.txt. The tools come from scripts/install-deps.sh (prometheus,
# yamllint, python3-yaml; systemd-analyze is part of Debian's systemd).
set(deploy_py /usr/bin/python3)
set(deploy_dir ${CMAKE_CURRENT_SOURCE_DIR}/deploy)
set(deploy_src ${CMAKE_SOURCE_DIR}/deploy)
find_program(ENGRAM_PROMTOOL promtool PATHS /usr/bin)
find_program(ENGRAM_PROMETHEUS prometheus PATHS /usr/bin)
find_program(ENGRAM_YAMLLINT yamllint PATHS /usr/bin)
find_program(ENGRAM_SYSTEMD_ANALYZE systemd-analyze PATHS /usr/bin /bin)
find_program(ENGRAM_KUBECTL kubectl)

# Binaries the checks hand to the deploy files' command lines (engramd judges its own flags).
set(deploy_bins --engramd $<TARGET_FILE:engramd> --engram-model $<TARGET_FILE:engram-model>)
set(deploy_client "")
if(TARGET engram-client)
  set(deploy_client --engram-client $<TARGET_FILE:engram-client>)
endif()

# Prometheus: the scrape config (with its rule files), the rules, and the rules' unit tests.
add_test(NAME deploy.promtool_check_config
         COMMAND ${ENGRAM_PROMTOOL} check config ${deploy_src}/prometheus/prometheus.yml)
add_test(NAME deploy.promtool_check_rules
         COMMAND ${ENGRAM_PROMTOOL} check rules ${deploy_src}/prometheus/alerts.yml)
add_test(NAME deploy.promtool_test_rules
         COMMAND ${ENGRAM_PROMTOOL} test rules ${deploy_dir}/alerts_test.yml)
# Every YAML file of deploy/ and tests/deploy/; warnings fail too.
add_test(NAME deploy.yamllint
         COMMAND ${ENGRAM_YAMLLINT} --strict -c ${deploy_src}/.yamllint ${deploy_src} ${deploy_dir})
# systemd-analyze verify + security on a copy whose ExecStart is the built engramd.
add_test(NAME deploy.systemd
         COMMAND ${deploy_py} ${deploy_dir}/check_systemd.py --engramd $<TARGET_FILE:engramd>
                 --systemd-analyze ${ENGRAM_SYSTEMD_ANALYZE})
# Kustomize base + overlays resolved and checked; with a kubectl on PATH (not a Debian 12
# package at a usable version), `kubectl kustomize` must render the same objects.
add_test(NAME deploy.k8s COMMAND ${deploy_py} ${deploy_dir}/check_k8s.py ${deploy_bins})
if(ENGRAM_KUBECTL)
  add_test(NAME deploy.k8s_kubectl_kustomize
           COMMAND ${deploy_py} ${deploy_dir}/check_k8s.py ${deploy_bins} --kubectl ${ENGRAM_KUBECTL})
  # exit 77: the kubectl found is older than 1.21 (its kustomize cannot render these).
  set_tests_properties(deploy.k8s_kubectl_kustomize PROPERTIES SKIP_RETURN_CODE 77)
endif()
# Dockerfiles against the repository, install-deps.sh and the built binaries' libraries.
add_test(NAME deploy.docker COMMAND ${deploy_py} ${deploy_dir}/check_docker.py ${deploy_bins} ${deploy_client})
# `docker run` of the CPU image emulated: ENTRYPOINT + CMD as the image's USER with its ENV and
# a fresh /models volume; HEALTHCHECK must pass, SIGTERM must exit 0 (root only: exit 77 skips).
if(TARGET engram-client)
  add_test(NAME deploy.docker_entrypoint
           COMMAND ${deploy_py} ${deploy_dir}/check_docker.py ${deploy_bins} ${deploy_client} --run-entrypoint)
  set_tests_properties(deploy.docker_entrypoint PROPERTIES SKIP_RETURN_CODE 77)
endif()
# Grafana queries against the metric names of server/ (the live check is in prometheus_live).
add_test(NAME deploy.grafana COMMAND ${deploy_py} ${deploy_dir}/check_grafana.py)
# engramd + Prometheus on loopback: target up, engram: series, rules, dashboard queries.
add_test(NAME deploy.prometheus_live
         COMMAND ${deploy_py} ${deploy_dir}/live_prometheus_test.py ${deploy_bins} ${deploy_client}
                 --prometheus ${ENGRAM_PROMETHEUS} --promtool ${ENGRAM_PROMTOOL}
                 --workdir ${CMAKE_CURRENT_BINARY_DIR}/tmp/deploy_prometheus_live)

set(deploy_tests deploy.promtool_check_config deploy.promtool_check_rules deploy.promtool_test_rules
    deploy.yamllint deploy.systemd deploy.k8s deploy.docker deploy.grafana deploy.prometheus_live)
if(ENGRAM_KUBECTL)
  list(APPEND deploy_tests deploy.k8s_kubectl_kustomize)
endif()
if(TARGET engram-client)
  list(APPEND deploy_tests deploy.docker_entrypoint)
endif()
set_tests_properties(${deploy_tests} PROPERTIES LABELS deploy TIMEOUT 120)
# The live test waits for servers; on a loaded machine it needs the CPU more than the others.
set_tests_properties(deploy.prometheus_live PROPERTIES TIMEOUT 180)
