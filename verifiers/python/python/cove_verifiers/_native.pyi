"""Type stubs of the native module (Rust, PyO3). Use the wrappers in
``cove_verifiers.math`` / ``.code``: they check argument types and find the runtime."""

from typing import Any, Dict, List, Optional, Tuple, Union

__version__: str
MAX_THREADS: int

class VerifierError(RuntimeError):
    """Base class of the errors that Cove's verifiers raise themselves."""

class SandboxUnavailable(VerifierError):
    """The code sandbox cannot be loaded; the message says how to get a runtime."""

def math_verify(gold: str, response: str, options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]: ...
def math_verify_batch(
    pairs: List[Tuple[str, str]], threads: int = 0, options: Optional[Dict[str, Any]] = None
) -> List[Dict[str, Any]]: ...
def math_default_options() -> Dict[str, Any]: ...
def init_sandbox(kind: str, runtime_dir: str, compiled_dir: str) -> Dict[str, Any]: ...
def sandbox_info() -> Optional[Dict[str, Any]]: ...
def run(
    code: str, stdin: Union[str, bytes], timeout_s: float, memory_mb: int, max_output_bytes: int
) -> Dict[str, Any]: ...
def parse_tests(tests_json: str) -> int: ...
def code_verify_batch(
    items: List[Tuple[str, str]],
    threads: int,
    timeout_s: float,
    memory_mb: int,
    max_output_bytes: int,
    scoring: str,
    stop_at_first_failure: bool,
    extract: str,
    worker_python: Optional[str] = None,
) -> List[Dict[str, Any]]: ...
def serve_worker() -> None: ...
