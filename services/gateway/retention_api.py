"""Routes of UI contract §(c) storage, §(d) cleanup and §(e) settings, served from the retention service.

All camelCase (models.CamelModel). Query parameter names stay snake_case, as in the contract.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query

from services.gateway import convert, models
from services.gateway.dependencies import INT64_MAX, INT64_MIN, RetentionDep
from services.gateway.errors import error_response, upstream_errors
from services.gateway.query_client import Conflict, NotFound

CLEANUP_RUNNING = "A cleanup is already running; try again when it has finished"
ALERT_NOT_FOUND = "Alert not found"


router = APIRouter(prefix="/api", responses=upstream_errors("retention"))

# FastAPI answers a body it cannot decode (not UTF-8) with 400 {"detail": "There was an error parsing the body"};
# malformed JSON is a 422.
BAD_BODY: dict[int | str, dict[str, Any]] = {400: error_response("the body could not be decoded")}

RetentionDaysQuery = Annotated[int | None, Query(ge=1, le=365, description="missing: the stored setting")]


# §(c) Storage


@router.get("/storage/sizes", response_model=models.StorageSizesResponse, tags=["storage"])
async def storage_sizes(retention: RetentionDep) -> models.StorageSizesResponse:
    """Current sizes measured live; a partitioned table is one entry that includes its partitions."""
    return convert.storage_sizes(await retention.get_storage_sizes())


@router.get("/storage/history", response_model=models.StorageHistoryResponse, tags=["storage"])
async def storage_history(
    retention: RetentionDep, limit: Annotated[int, Query(ge=1, le=100)] = 30
) -> models.StorageHistoryResponse:
    """Daily samples (the last 90 are kept), newest first."""
    return convert.storage_history(await retention.list_storage_samples(limit))


@router.get("/storage/alerts", response_model=models.StorageAlertsResponse, tags=["storage"])
async def storage_alerts(retention: RetentionDep) -> models.StorageAlertsResponse:
    """Unresolved alerts, newest first."""
    return convert.storage_alerts(await retention.list_storage_alerts())


@router.post(
    "/storage/alerts/{alert_id}/resolve",
    response_model=models.StorageAlertItem,
    responses={404: error_response("unknown alert")},
    tags=["storage"],
)
async def resolve_storage_alert(
    retention: RetentionDep, alert_id: Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX, examples=[3])]
) -> models.StorageAlertItem:
    """Sets resolvedAt to now; resolving a resolved alert sets the time again. No request body."""
    try:
        return convert.storage_alert(await retention.resolve_storage_alert(alert_id))
    except NotFound as exc:
        raise HTTPException(404, ALERT_NOT_FOUND) from exc


# §(d) Cleanup


@router.get("/cleanup/stats", response_model=models.DataStatsResponse, tags=["cleanup"])
async def cleanup_stats(retention: RetentionDep) -> models.DataStatsResponse:
    """Row counts and date ranges per table. scrapeRuns and scrapeBatches are the old system's, in a database
    taken over from it (0 with null dates otherwise). eventsByPlatform is labelled by bookmaker slug."""
    return convert.data_stats(await retention.get_data_stats())


@router.get("/cleanup/preview", response_model=models.CleanupPreviewResponse, tags=["cleanup"])
async def cleanup_preview(
    retention: RetentionDep, odds_days: RetentionDaysQuery = None, match_days: RetentionDaysQuery = None
) -> models.CleanupPreviewResponse:
    """A dry run: what a cleanup with these retentions would delete now. Deletes nothing.

    marketOddsHistoryCount counts the rows of the history partitions that would be dropped;
    scrapeRunsCount and scrapeBatchesCount: the old system's scrape runs and batches started before the odds cutoff
    that no remaining snapshot refers to (0 unless the database was taken over from it).
    """
    return convert.cleanup_preview(await retention.preview_cleanup(convert.cleanup_request(odds_days, match_days)))


@router.post(
    "/cleanup/execute",
    response_model=models.CleanupResultResponse,
    responses={**BAD_BODY, 409: error_response("a cleanup is already running")},
    tags=["cleanup"],
)
async def cleanup_execute(
    retention: RetentionDep,
    body: Annotated[models.CleanupExecuteRequest | None, Body(description="optional; camelCase or snake_case")] = None,
) -> models.CleanupResultResponse:
    """A manual cleanup, answered when it has finished. A missing retention is the stored setting.

    409 while another run (manual or scheduled) is in progress; the old backend's 500 there was a defect.
    Retention days outside 1–365 are refused by the retention service (422). scrapeRunsDeleted and
    scrapeBatchesDeleted count the old system's scrape runs and batches (0 unless the database was taken over).
    """
    request = convert.cleanup_request(
        body.odds_retention_days if body else None, body.match_retention_days if body else None
    )
    try:
        return convert.cleanup_result(await retention.run_cleanup(request))
    except Conflict as exc:
        raise HTTPException(409, CLEANUP_RUNNING) from exc


@router.get("/cleanup/history", response_model=models.CleanupHistoryResponse, tags=["cleanup"])
async def cleanup_history(
    retention: RetentionDep, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> models.CleanupHistoryResponse:
    """Cleanup runs, manual and scheduled, newest first."""
    return convert.cleanup_history(await retention.list_cleanup_runs(limit))


# §(e) Settings


@router.get("/settings", response_model=models.SettingsResponse, tags=["settings"])
async def get_settings(retention: RetentionDep) -> models.SettingsResponse:
    return convert.settings(await retention.get_settings())


@router.put("/settings", response_model=models.SettingsResponse, responses=BAD_BODY, tags=["settings"])
async def update_settings(retention: RetentionDep, update: models.SettingsUpdateRequest) -> models.SettingsResponse:
    """A partial update: fields that are missing or null are left as they are. Out of range: 422."""
    return convert.settings(await retention.update_settings(convert.settings_update(update)))
