# CMake toolchain file: cross-compile the client for 64-bit Windows with Debian's MinGW-w64
# (g++-mingw-w64-x86-64), posix thread model (std::thread/std::mutex, through winpthread).
# client/cpp/windows/build.sh passes it, with Crypto++'s cross-built prefix in
# CMAKE_PREFIX_PATH and PKG_CONFIG_LIBDIR, so nothing of the Linux host's Crypto++ is seen.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(EFT_MINGW_TRIPLET x86_64-w64-mingw32)

set(CMAKE_C_COMPILER ${EFT_MINGW_TRIPLET}-gcc-posix)
set(CMAKE_CXX_COMPILER ${EFT_MINGW_TRIPLET}-g++-posix)
set(CMAKE_RC_COMPILER ${EFT_MINGW_TRIPLET}-windres)

# Headers and libraries from the MinGW sysroot and Crypto++'s prefix (EFT_CRYPTOPP_PREFIX,
# from build.sh); programs from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${EFT_MINGW_TRIPLET} ${EFT_CRYPTOPP_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest runs the Windows test programs through Wine when it is there.
find_program(EFT_WINE NAMES wine wine64)
if(EFT_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EFT_WINE})
endif()
