# Sanitizer and fuzzing builds (issue 20). Included from the top-level
# CMakeLists.txt before any target is defined.
#
#   -DFERRY_SANITIZE=address  ASan + UBSan, every report fatal (deploy/test.sh --sanitize address)
#   -DFERRY_SANITIZE=thread   TSan, every report fatal      (deploy/test.sh --sanitize thread)
#   -DFERRY_FUZZ=ON           clang only: the libraries with -fsanitize=fuzzer-no-link,address
#                             and the libFuzzer targets of tests/fuzz/ (deploy/build-fuzz.sh);
#                             nothing else is built by default in such a tree.
set(FERRY_SANITIZE "" CACHE STRING "Sanitizer build: address (ASan+UBSan) or thread (TSan); empty for none")
option(FERRY_FUZZ "Build the libFuzzer targets of tests/fuzz (clang only)" OFF)

if(FERRY_SANITIZE STREQUAL "address")
  set(_ferry_san -fsanitize=address,undefined -fno-sanitize-recover=all)
elseif(FERRY_SANITIZE STREQUAL "thread")
  set(_ferry_san -fsanitize=thread)
elseif(NOT FERRY_SANITIZE STREQUAL "")
  message(FATAL_ERROR "FERRY_SANITIZE must be address, thread or empty, not '${FERRY_SANITIZE}'")
endif()
if(_ferry_san)
  add_compile_options(${_ferry_san} -fno-omit-frame-pointer)
  # gcc's flow analysis under ASan reports std::function inside <regex> as
  # maybe-uninitialized (libstdc++ headers, not ferry's code).
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-Wno-maybe-uninitialized)
  endif()
  add_link_options(${_ferry_san})
endif()

if(FERRY_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "FERRY_FUZZ=ON needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_C_COMPILER=clang-14")
  endif()
  # Every library is instrumented for coverage and ASan; only the fuzz targets
  # link libFuzzer's main (tests/fuzz/CMakeLists.txt adds -fsanitize=fuzzer).
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
