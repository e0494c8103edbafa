"""The one error hierarchy of modelport.

Every error a user can see is a :class:`ModelportError`. Each class knows how it is
reported at every edge: its HTTP status, its gRPC status code and the exit code of the
command line. The edges (REST, gRPC, CLI) map errors in one table each and never
inspect messages. This module imports nothing but the standard library, so no web or
RPC framework leaks into the core.

    ModelportError                      500  INTERNAL             exit 1
    ├── InvalidArgument                 400  INVALID_ARGUMENT     exit 2
    │   ├── InvalidName                 400  INVALID_ARGUMENT     exit 2
    │   ├── InvalidModel                400  INVALID_ARGUMENT     exit 2
    │   └── UnsupportedFormat           400  INVALID_ARGUMENT     exit 2
    ├── NotFound                        404  NOT_FOUND            exit 3
    ├── AlreadyExists                   409  ALREADY_EXISTS       exit 4
    ├── Conflict                        409  ABORTED              exit 4
    ├── FailedPrecondition              412  FAILED_PRECONDITION  exit 5
    ├── Unauthenticated                 401  UNAUTHENTICATED      exit 6
    ├── PermissionDenied                403  PERMISSION_DENIED    exit 7
    ├── PayloadTooLarge                 413  RESOURCE_EXHAUSTED   exit 2
    ├── Unavailable                     503  UNAVAILABLE          exit 8
    ├── DeadlineExceeded                504  DEADLINE_EXCEEDED    exit 8
    ├── MissingDependency               501  UNIMPLEMENTED        exit 9
    ├── StorageError                    500  INTERNAL             exit 10
    │   └── IntegrityError              500  DATA_LOSS            exit 11
    │       ├── SignatureError          500  DATA_LOSS            exit 11
    │       └── DecryptionError         500  DATA_LOSS            exit 11
    └── ModelExecutionError             500  INTERNAL             exit 12
"""

from __future__ import annotations

import enum
from http import HTTPStatus


class GrpcCode(enum.IntEnum):
    """gRPC status codes (same numbers as ``grpc.StatusCode``), without importing grpc."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ModelportError(Exception):
    """Root of every error modelport raises on purpose.

    Example:
        >>> try:
        ...     raise NotFound("model 'iris' does not exist")
        ... except ModelportError as e:
        ...     (e.http_status, e.grpc_code.name, e.exit_code)
        (<HTTPStatus.NOT_FOUND: 404>, 'NOT_FOUND', 3)
    """

    http_status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    grpc_code: GrpcCode = GrpcCode.INTERNAL
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ModelportError):
    """The caller sent something malformed; fix the input and retry."""

    http_status = HTTPStatus.BAD_REQUEST
    grpc_code = GrpcCode.INVALID_ARGUMENT
    exit_code = 2


class InvalidName(InvalidArgument):
    """A model, alias or file name that breaks the naming rules."""


class InvalidModel(InvalidArgument):
    """A file that claims to be a model but is corrupt, truncated or inconsistent."""


class UnsupportedFormat(InvalidArgument):
    """A file whose format modelport cannot read (the message lists what it can)."""


class NotFound(ModelportError):
    """A model, version, alias or key that does not exist."""

    http_status = HTTPStatus.NOT_FOUND
    grpc_code = GrpcCode.NOT_FOUND
    exit_code = 3


class AlreadyExists(ModelportError):
    """Something with this identity already exists and is immutable."""

    http_status = HTTPStatus.CONFLICT
    grpc_code = GrpcCode.ALREADY_EXISTS
    exit_code = 4


class Conflict(ModelportError):
    """A concurrent change won a race (e.g. an alias moved since it was read)."""

    http_status = HTTPStatus.CONFLICT
    grpc_code = GrpcCode.ABORTED
    exit_code = 4


class FailedPrecondition(ModelportError):
    """The operation is refused in the current state (e.g. deleting an aliased version)."""

    http_status = HTTPStatus.PRECONDITION_FAILED
    grpc_code = GrpcCode.FAILED_PRECONDITION
    exit_code = 5


class Unauthenticated(ModelportError):
    """Missing or invalid credentials."""

    http_status = HTTPStatus.UNAUTHORIZED
    grpc_code = GrpcCode.UNAUTHENTICATED
    exit_code = 6


class PermissionDenied(ModelportError):
    """Valid credentials without the right to do this."""

    http_status = HTTPStatus.FORBIDDEN
    grpc_code = GrpcCode.PERMISSION_DENIED
    exit_code = 7


class PayloadTooLarge(ModelportError):
    """A request or file over a configured size limit."""

    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = GrpcCode.RESOURCE_EXHAUSTED
    exit_code = 2


class Unavailable(ModelportError):
    """Not ready or overloaded; retrying later may succeed."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = GrpcCode.UNAVAILABLE
    exit_code = 8


class DeadlineExceeded(ModelportError):
    """The work did not finish within its deadline."""

    http_status = HTTPStatus.GATEWAY_TIMEOUT
    grpc_code = GrpcCode.DEADLINE_EXCEEDED
    exit_code = 8


class MissingDependency(ModelportError):
    """An optional framework is not installed; the message names the pip command."""

    http_status = HTTPStatus.NOT_IMPLEMENTED
    grpc_code = GrpcCode.UNIMPLEMENTED
    exit_code = 9

    @classmethod
    def for_extra(cls, module: str, extra: str, purpose: str) -> MissingDependency:
        """Build the error for a missing optional module.

        Example:
            >>> str(MissingDependency.for_extra("torch", "torch", "PyTorch models"))
            "PyTorch models need the 'torch' package: pip install 'modelport[torch]'"
        """
        return cls(f"{purpose} need the {module!r} package: pip install 'modelport[{extra}]'")


class StorageError(ModelportError):
    """The registry's database or artifact store failed."""

    exit_code = 10


class IntegrityError(StorageError):
    """Stored bytes do not match their recorded digest."""

    grpc_code = GrpcCode.DATA_LOSS
    exit_code = 11


class ModelExecutionError(ModelportError):
    """The model itself failed while running."""

    exit_code = 12


class SignatureError(IntegrityError):
    """A signed artifact is tampered with, unsigned where signing is required, or signed
    by a key that is not trusted."""


class DecryptionError(IntegrityError):
    """Encrypted bytes cannot be opened: wrong key, truncated or modified ciphertext, or
    associated data (model name, version) that does not match."""


__all__ = [
    "AlreadyExists",
    "Conflict",
    "DeadlineExceeded",
    "DecryptionError",
    "FailedPrecondition",
    "GrpcCode",
    "IntegrityError",
    "InvalidArgument",
    "InvalidModel",
    "InvalidName",
    "MissingDependency",
    "ModelExecutionError",
    "ModelportError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "SignatureError",
    "StorageError",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedFormat",
]
