"""What pyproject.toml cannot declare (its ``[tool.setuptools.ext-modules]`` is experimental):

* the C extensions: the engine's per-event loop (streams/engine/c/) and the decoder's first pass
  (schemas/_decode.c); Python and msgspec run where they are not built;
* the local Kafka's scripts in the built package: deploy/kafka/ stays their single source, and a
  build copies kafka.sh with what it reads next to itself (pom.xml, log4j2.properties,
  ../retry.sh) into ``streams/devtools/deploy/``, where ``vitals kafka``/``vitals run`` of an
  installed copy find them (streams/devtools/local_kafka.py). MANIFEST.in puts them in the sdist.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

# deploy/<path> -> streams/devtools/deploy/<path> in the built package
DEPLOY_FILES = ["retry.sh", "kafka/kafka.sh", "kafka/pom.xml", "kafka/log4j2.properties"]


class BuildPyWithDeploy(build_py):
    """build_py, and the local Kafka's scripts copied into the package (not for an editable install,
    which runs the checkout's deploy/)."""

    def _deploy_targets(self) -> list[tuple[str, str]]:
        out = os.path.join(self.build_lib, "streams", "devtools", "deploy")
        return [(os.path.join("deploy", rel), os.path.join(out, rel)) for rel in DEPLOY_FILES]

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for source, target in self._deploy_targets():
            self.mkpath(os.path.dirname(target))
            self.copy_file(source, target, preserve_mode=True)  # kafka.sh keeps its mode

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:  # type: ignore[override]
        outputs = list(super().get_outputs(include_bytecode))
        return outputs if self.editable_mode else outputs + [target for _, target in self._deploy_targets()]


ENGINE_C = ["module.c", "apply.c", "run.c", "columns.c", "drain.c", "partitioner.c", "segments.c"]

setup(
    ext_modules=[
        Extension(
            "streams.engine._engine",
            sources=[f"streams/engine/c/{name}" for name in ENGINE_C],
            depends=["streams/engine/c/engine.h", "streams/engine/c/vendor/xxhash.h"],
            extra_compile_args=["-Wall", "-fvisibility=hidden"],
        ),
        Extension("schemas._decode", sources=["schemas/_decode.c"], extra_compile_args=["-Wall"]),
    ],
    cmdclass={"build_py": BuildPyWithDeploy},
)
