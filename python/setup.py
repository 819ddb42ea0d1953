"""Builds the `topk` Python package: topk/_C (a torch extension, csrc/binding.cpp) over
libtopk_capi.so (topk's ops behind a C ABI, csrc/topk_capi.h), both built here against the
installed torch and this repository's sources.

    pip install --no-build-isolation ./python          # from the repository root

Where libtopk_capi.so comes from (first that applies):
  TOPK_CAPI_LIB=/path/libtopk_capi.so   a prebuilt one (a CMake build of the repository makes
                                        build/python/libtopk_capi.so)
  TOPK_PREFIX=/opt/topk                 an installed topk (cmake --install): python/ is built
                                        against it with find_package(topk)
  otherwise                             CMake builds the repository (python/..) for it, with the
                                        CUDA backend when torch has CUDA and nvcc is found
Other variables: TOPK_CUDA=0|1 (force the CUDA backend off or on), TOPK_CMAKE_ARGS (extra CMake
arguments), TOPK_CMAKE_BUILD_DIR (where CMake builds; reused between builds), MAX_JOBS.
"""
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
import torch
from torch.utils.cpp_extension import BuildExtension, CppExtension

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIB = "libtopk_capi.so"


def log(msg):
    print(f"topk setup: {msg}", flush=True)


def cmake_build_capi(build_temp):
    build = Path(os.environ.get("TOPK_CMAKE_BUILD_DIR") or Path(build_temp) / "topk-cmake").resolve()
    args = ["cmake", "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    prefix = os.environ.get("TOPK_PREFIX")
    if prefix:
        args += ["-S", str(HERE), f"-DCMAKE_PREFIX_PATH={prefix}"]
    else:
        if not (ROOT / "CMakeLists.txt").exists() or not (ROOT / "include" / "topk").is_dir():
            raise RuntimeError(
                f"topk setup: {ROOT} is not the topk repository; build from a checkout "
                "(pip install ./python), or set TOPK_CAPI_LIB or TOPK_PREFIX")
        args += ["-S", str(ROOT), "-DTOPK_TESTS=OFF", "-DTOPK_CAPI=ON"]
        cuda = os.environ.get("TOPK_CUDA")
        if cuda is None and torch.version.cuda is None:
            cuda = "0"  # a CPU-only torch: no need to spend minutes on the CUDA kernels
        if cuda is not None:
            args.append("-DTOPK_CUDA=" + ("ON" if cuda not in ("0", "OFF", "off", "") else "OFF"))
    args += shlex.split(os.environ.get("TOPK_CMAKE_ARGS", ""))
    log(" ".join(args))
    subprocess.check_call(args)
    jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 2)
    subprocess.check_call(["cmake", "--build", str(build), "--target", "topk_capi", "-j", jobs])
    for cand in [build / "python" / LIB, build / LIB]:
        if cand.exists():
            return cand
    raise RuntimeError(f"topk setup: {LIB} was not built under {build}")


class Build(BuildExtension):
    def build_extensions(self):
        lib = os.environ.get("TOPK_CAPI_LIB")
        if lib:
            lib = Path(lib).resolve()
            if not lib.exists():
                raise RuntimeError(f"topk setup: TOPK_CAPI_LIB={lib} does not exist")
            log(f"using {lib}")
        else:
            lib = cmake_build_capi(self.build_temp)
        # The library sits next to the extension (rpath $ORIGIN), in the build and in place.
        dests = [Path(self.build_lib) / "topk"]
        if self.inplace:
            dests.append(HERE / "topk")
        for d in dests:
            d.mkdir(parents=True, exist_ok=True)
            if (d / LIB).resolve() != lib:
                shutil.copyfile(lib, d / LIB)
        for ext in self.extensions:
            ext.library_dirs.append(str(lib.parent))
        super().build_extensions()


setup(
    ext_modules=[
        CppExtension(
            "topk._C",
            ["csrc/binding.cpp"],
            include_dirs=[str(HERE / "csrc")],
            libraries=["topk_capi"],
            extra_compile_args=["-O2"],
            extra_link_args=["-Wl,-rpath,$ORIGIN"],
        )
    ],
    cmdclass={"build_ext": Build},
)
