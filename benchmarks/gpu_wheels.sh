#!/usr/bin/env bash
# Wheels for a lent nvidia-h200 machine (Python 3.12, no registry there): what `python -m pipelines.train`
# imports that its image lacks, for benchmarks/gpu_e2e.sh. Run here, in the repo root:
#     bash benchmarks/gpu_wheels.sh          # -> .whl/ (ignored through .git/info/exclude)
#     WHEEL_PY=3.11 WHEEL_DIR=/tmp/whl311 bash benchmarks/gpu_wheels.sh   # the same set for a CPU rehearsal
# then carry `.whl` in the device call. Versions are requirements.txt's pins and what `make setup`
# resolved for them. --no-deps: every needed dependency is named below, one version each; those the
# image already has (numpy, pandas, scipy, scikit-learn, torch, numba, pyyaml, requests,
# click, cloudpickle, anyio, h11, joblib, lazy-loader, msgpack, markupsafe, zipp, tqdm, psutil,
# nvidia-ml-py, ... see .library/device/KINDS.md) are not carried.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  # tracking: mlflow-skinny holds every module the platform uses (the full `mlflow` wheel adds only
  # the UI's JavaScript, server/js, and model_catalog: 30 MB). mlflow-tracing is a subset of skinny.
  mlflow-skinny==3.17.2
  sqlalchemy==2.1.9            # sqlite:/// tracking store (mlflow.store.tracking.sqlalchemy_store); optuna
  alembic==1.20.1              # migrates the sqlite store's schema on first use; optuna
  cryptography==50.0.2         # the sqlite store (mlflow.store.model_registry.dbmodels imports Fernet);
                               # a dependency of full mlflow, not skinny (compiled: abi3; needs cffi)
  mako==1.4.3                  # alembic
  sqlparse==0.6.1              # mlflow-skinny
  cachetools==7.3.3            # mlflow-skinny
  importlib-metadata==9.1.0    # mlflow-skinny, opentelemetry-api
  opentelemetry-api==1.45.2    # mlflow-skinny (mlflow.tracing, imported by `import mlflow`)
  opentelemetry-sdk==1.45.2    # mlflow-skinny
  opentelemetry-proto==1.45.2  # mlflow-skinny
  opentelemetry-semantic-conventions==0.66b2  # opentelemetry-sdk
  protobuf==7.36.2             # the image has it, version unknown: mlflow's and opentelemetry-proto's
                               # generated code needs >= 5.26.1; this is the version tested here (abi3)
  pydantic==2.14.4             # mlflow-skinny (entities, types); fastapi
  pydantic-core==2.50.5        # pydantic (compiled: cp312)
  annotated-types==0.8.0       # pydantic
  typing-inspection==0.4.5     # pydantic
  typing-extensions==4.16.0    # the image has it, version unknown: pydantic and pydantic-core need >= 4.16.0
  python-dotenv==1.2.4         # mlflow-skinny
  gitpython==3.2.1             # mlflow-skinny (run's source commit)
  gitdb==4.0.12                # gitpython
  smmap==5.0.3                 # gitdb
  fastapi==0.165.0             # mlflow-skinny (declared; its server only)
  starlette==1.10.0            # mlflow-skinny, fastapi
  uvicorn==0.55.0              # mlflow-skinny (declared; its server only)
  databricks-sdk==0.167.0      # mlflow-skinny: `import mlflow` needs the `databricks` package to exist
                               # (find_spec("databricks.agents")); databricks.sdk itself is not imported
  google-auth==2.63.0          # databricks-sdk (declared; not imported by a run on a sqlite store)
  pyasn1-modules==0.4.2        # google-auth
  pyasn1==0.6.5                # pyasn1-modules
  # Optuna: pipelines.train imports it too (components.tracking.library_internals)
  optuna==5.0.0
  colorlog==6.12.0             # optuna
  # audio: components.data.audio imports librosa at load; decoding the corpus needs the rest
  librosa==0.11.0
  soundfile==0.14.0            # librosa's decoder (bundles libsndfile with Ogg Vorbis)
  cffi==2.1.1                  # soundfile, cryptography (compiled: cp312)
  pycparser==3.12              # cffi
  soxr==1.1.0                  # librosa's resampler, res_type soxr_hq (compiled: cp312)
  audioread==3.1.0             # librosa
  decorator==5.3.1             # librosa
  pooch==1.9.0                 # librosa (librosa.util.files)
  platformdirs==4.14.9         # pooch
)
DIR=${WHEEL_DIR:-.whl}
mkdir -p "$DIR"
rm -f "$DIR"/*.whl  # one version of each: leftovers of an earlier list would stop the install there
# (the grep drops pip's notes about local index folders that this machine's pip.conf names)
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "${WHEEL_PY:-3.12}" --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64 -d "$DIR" "${WHEELS[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
echo "$(ls "$DIR" | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
# Every need of every wheel (for Python 3.12 on Linux, no extras) is a wheel here or in the image.
python3 - "$DIR" "${WHEEL_PY:-3.12}" <<'PY'
import pathlib, re, sys, zipfile
from pip._vendor.packaging.requirements import Requirement
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
image = {norm(n) for n in """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
attrs certifi charset-normalizer click cloudpickle contourpy cycler filelock fonttools fsspec h11 idna
jinja2 joblib kiwisolver lazy-loader llvmlite markupsafe matplotlib msgpack numba numpy nvidia-ml-py
packaging pandas pillow protobuf psutil pyarrow pyparsing python-dateutil pyyaml requests scikit-learn
scipy six sympy threadpoolctl torch tqdm typing-extensions urllib3 werkzeug zipp""".split()}  # KINDS.md, in part
wheels = sorted(pathlib.Path(sys.argv[1]).glob("*.whl"))
have = {norm(w.name.split("-")[0]) for w in wheels}
env = {"python_version": sys.argv[2], "python_full_version": sys.argv[2] + ".3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
missing = []
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    for line in meta.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if (not req.marker or req.marker.evaluate(env)) and norm(req.name) not in have | image:
                missing.append(f"{wheel.name}: {req}")
if missing:
    sys.exit("needs neither carried nor in the image:\n  " + "\n  ".join(missing))
print(f"every need of the {len(wheels)} wheels is met")
PY
