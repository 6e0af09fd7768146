"""``POST /reconciliation/statements/``: upload a statement (multipart), accepted with 202 and
read by a worker; the same file again answers 200 with the first upload's run."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import ApiError, errors
from core.auth import HasReconciliationScope, request_client, request_key

from ..formats.limits import StatementFormatError
from ..imports import statement_accept
from ..selectors import (
    run_list,
)
from .serializers import RunSerializer, UploadResponseSerializer, UploadSerializer


def max_upload_bytes() -> int:
    return settings.RECONCILIATION_MAX_UPLOAD_BYTES


class StatementUploadView(APIView):
    permission_classes = [HasReconciliationScope]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="reconciliation_statement_upload",
        request={"multipart/form-data": UploadSerializer},
        responses={
            202: OpenApiResponse(
                UploadResponseSerializer,
                description="Accepted and queued: a worker reads and matches the file. Follow "
                "the run (GET /reconciliation/runs/{id}/) until its state is 'completed' or "
                "'failed' (with the reason in 'error'). Also the answer to a file whose "
                "earlier upload failed: it is queued again.",
            ),
            200: OpenApiResponse(
                UploadResponseSerializer,
                description="The same file was uploaded before: its run, in whatever state.",
            ),
            **errors(
                e400="An empty file, one that is no statement by its first bytes (HTML), or "
                "a field at fault",
                e413="File over RECONCILIATION_MAX_UPLOAD_BYTES",
                e415="Not a multipart (or form) body",
            ),
        },
        summary="Upload an M-Pesa statement to be reconciled (queued; answered 202)",
    )
    def post(self, request: Request) -> Response:
        serializer = UploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        if upload.size > max_upload_bytes():
            raise ApiError(
                code="payload_too_large",
                message=f"The file is over {max_upload_bytes()} bytes; use the "
                "reconcile_statement command for large statements.",
                http_status=413,
            )
        data = upload.read()
        try:
            result = statement_accept(
                data=data,
                file_name=upload.name or "",
                client=request_client(request),
                actor=request_key(request).name,
                time_window_seconds=serializer.validated_data.get("time_window_seconds"),
                auto_resolve=serializer.validated_data["auto_resolve"],
            )
        except StatementFormatError as exc:
            raise ApiError(
                code="unreadable_statement",
                message=str(exc),
                http_status=400,
                fields={"file": str(exc)},
            ) from None
        # Read back as the runs list reads it (with the open breaks).
        run = run_list(client=request_client(request)).get(pk=result.run.pk)
        body = {"already_imported": not result.created, "run": RunSerializer(run).data}
        response = Response(
            body, status=status.HTTP_202_ACCEPTED if result.queued else status.HTTP_200_OK
        )
        response["Location"] = f"/reconciliation/runs/{run.pk}/"
        return response
