# Build conventions shared by every module.
#
#   VG_SANITIZE=ON   ASan + UBSan, no recovery (make test builds a second tree with it)
#   VG_FUZZ=ON       build libFuzzer targets (needs clang)
#   VG_WERROR=ON     warnings are errors (default ON: gcc and clang must both stay clean)
#
# Helpers:
#   vg_add_module(NAME <m> SOURCES ... DEPS ...)   static library vg_<m>, include root = src/
#   vg_add_test(NAME <t> SOURCES ... DEPS ... [TIMEOUT s] [LABELS ...])  cmocka test, one process
#   vg_add_fuzz(NAME <f> SOURCES ... DEPS ... [CORPUS dir])               libFuzzer target

option(VG_SANITIZE "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(VG_FUZZ "Build libFuzzer targets (clang only)" OFF)
option(VG_WERROR "Treat warnings as errors" ON)

set(VG_WARNINGS -Wall -Wextra -Wshadow -Wvla -Wformat=2 -Wno-unused-parameter
    -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith)
if(VG_WERROR)
  list(APPEND VG_WARNINGS -Werror)
endif()

# No -march=native: binaries must run on any x86-64 CI machine. SIMD paths use
# __attribute__((target(...))) and pick themselves at run time from vg_cpu_features().
add_compile_options(-fno-strict-aliasing -fstack-protector-strong -D_GNU_SOURCE)
if(CMAKE_BUILD_TYPE STREQUAL "Release")
  add_compile_options(-O2 -g)
endif()

if(VG_SANITIZE)
  add_compile_options(-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined -fno-sanitize-recover=all)
  add_compile_definitions(VG_SANITIZE=1)
endif()

if(VG_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "VG_FUZZ needs clang (cmake -DCMAKE_C_COMPILER=clang)")
  endif()
  # Coverage instrumentation for every library; only fuzz targets link the libFuzzer main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

set(VG_TEST_DATA_DIR ${CMAKE_SOURCE_DIR}/tests/data)
set(VG_MODELS_DIR ${CMAKE_SOURCE_DIR}/models)

function(vg_add_module)
  cmake_parse_arguments(A "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_library(vg_${A_NAME} STATIC ${A_SOURCES})
  target_include_directories(vg_${A_NAME} PUBLIC ${CMAKE_SOURCE_DIR}/src)
  target_compile_options(vg_${A_NAME} PRIVATE ${VG_WARNINGS})
  target_link_libraries(vg_${A_NAME} PUBLIC ${A_DEPS})
  set_property(GLOBAL APPEND PROPERTY VG_MODULES vg_${A_NAME})
endfunction()

function(vg_add_test)
  cmake_parse_arguments(A "" "NAME;TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  add_executable(${A_NAME} ${A_SOURCES})
  target_compile_options(${A_NAME} PRIVATE ${VG_WARNINGS} -Wno-missing-prototypes)
  target_compile_definitions(${A_NAME} PRIVATE
      VG_TEST_DATA_DIR="${VG_TEST_DATA_DIR}" VG_MODELS_DIR="${VG_MODELS_DIR}"
      VG_BINARY_DIR="${CMAKE_BINARY_DIR}")
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} PkgConfig::CMOCKA)
  add_test(NAME ${A_NAME} COMMAND ${A_NAME})
  set_tests_properties(${A_NAME} PROPERTIES TIMEOUT ${A_TIMEOUT})
  if(A_LABELS)
    set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}")
  endif()
endfunction()

function(vg_add_fuzz)
  cmake_parse_arguments(A "" "NAME;CORPUS" "SOURCES;DEPS" ${ARGN})
  if(NOT VG_FUZZ)
    return()
  endif()
  add_executable(${A_NAME} ${A_SOURCES})
  target_compile_options(${A_NAME} PRIVATE ${VG_WARNINGS} -Wno-missing-prototypes
                         -fsanitize=fuzzer)
  target_link_options(${A_NAME} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
  set_property(GLOBAL APPEND PROPERTY VG_FUZZ_TARGETS ${A_NAME})
endfunction()
