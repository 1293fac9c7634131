"""The campaign page's web application, and the server that runs it beside a job.

Every page is rendered at its request from the campaign state, opened read-only for that request, so it shows
the campaign as it is now (a round or a retire pass may be writing meanwhile: SQLite's WAL gives the page a
consistent snapshot). The application answers GET (and HEAD) only, and serves files only from the run
directories the state records for its rounds.
"""

from __future__ import annotations

import io
import math
import os
import threading
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response, abort, render_template, request, send_from_directory
from PIL import Image
from werkzeug.security import safe_join

from glitchrun.page.views import CampaignView, campaign_view, files, plots, size_text

#: thumbnails' longest side in pixels: half a Gravity Spy Q-scan (800 x 600), its axis labels still legible
THUMBNAIL_SIZE = 400
#: files a browser should show as text rather than download
TEXT_SUFFIXES = (".md", ".csv", ".log", ".yaml", ".txt", ".json")
#: the newest label changes the overview lists
LABEL_CHANGES_SHOWN = 10
#: disputed subjects a page shows (each with every Q-scan): an expert's sitting, and a page that stays quick
DISPUTED_PER_PAGE = 50


def create_app(state_dir: str | Path, name: str) -> Flask:
    """The page of the campaign ``name`` whose state is in ``state_dir``."""
    app = Flask(__name__)  # its templates/ and static/ folders ship beside this module
    state_dir = Path(state_dir)
    app.jinja_env.filters["size"] = size_text

    def render(template: str, view: CampaignView | None, **context: Any) -> str:
        counts = view.subject_counts() if view is not None else {}
        return render_template(template, name=name, state_dir=state_dir, numbers=view.numbers() if view else [],
                               counts=counts, read_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                               **context)

    @app.get("/")
    def overview() -> str:
        if not (state_dir / "campaign.sqlite").is_file():
            return render("empty.html", None)
        with campaign_view(state_dir) as view:
            rounds = view.rounds()
            last = int(rounds["round"].iloc[-1]) if len(rounds) else None
            report = next((n for n in reversed(view.numbers()) if plots(view.run_dir(n))), None)
            return render("overview.html", view, facts=view.facts(), rounds=rounds, last=last,
                          cards=view.batch_cards(last) if last is not None else [],
                          report=report, plots=plots(view.run_dir(report)) if report is not None else [],
                          labels=view.labels_by_class(), changes=view.label_changes(LABEL_CHANGES_SHOWN))

    @app.get("/round/<int:number>")
    def round_page(number: int) -> str:
        with campaign_view(state_dir) as view:
            if number not in view.numbers():
                abort(404, f"the campaign has no round {number}")
            rounds = view.rounds()
            run_dir = view.run_dir(number)
            return render("round.html", view, number=number, row=rounds[rounds["round"] == number].iloc[0],
                          run_dir=run_dir, scan_dir=view.scan_dir(number), cards=view.batch_cards(number),
                          plots=plots(run_dir), files=files(run_dir))

    @app.get("/disputed")
    def disputed() -> str:
        """The disputed subjects, ``DISPUTED_PER_PAGE`` a page (``?page=2``...): each card shows every Q-scan."""
        number = request.args.get("page", 1, type=int)
        with campaign_view(state_dir) as view:
            first = (max(number, 1) - 1) * DISPUTED_PER_PAGE
            cards, total = view.disputed_cards(first, DISPUTED_PER_PAGE)
            pages = max(math.ceil(total / DISPUTED_PER_PAGE), 1)
            if not 1 <= number <= pages:
                abort(404, f"there are {pages} pages of disputed subjects")
            return render("disputed.html", view, cards=cards, total=total, page=number, pages=pages, first=first)

    @app.get("/files/<int:number>/<path:name>")
    def run_file(number: int, name: str) -> Response:
        """A file of round ``number``'s run directory (text shown as text, not downloaded)."""
        response = send_from_directory(round_dir(number), name)
        if name.endswith(TEXT_SUFFIXES):
            response.mimetype = "text/plain"
        return response

    @app.get("/scans/<int:number>/<path:name>")
    def scan(number: int, name: str) -> Response:
        """A Q-scan of round ``number``, full size, from the run that rendered it (``CampaignView.scan_dir``)."""
        return send_from_directory(round_dir(number, scans=True), name)

    @app.get("/thumbnails/<int:number>/<path:name>")
    def thumbnail(number: int, name: str) -> Response:
        """A Q-scan of round ``number``, scaled down to ``THUMBNAIL_SIZE`` (JPEG)."""
        path = safe_join(str(round_dir(number, scans=True)), name)  # send_from_directory's rule: inside the directory
        if path is None or not os.path.isfile(path):
            abort(404)
        return Response(thumbnail_jpeg(path, os.stat(path).st_mtime_ns), mimetype="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})

    def round_dir(number: int, scans: bool = False) -> Path:
        """The run directory that chose round ``number``'s batch or (``scans``) that holds its Q-scans."""
        with campaign_view(state_dir) as view:
            run_dir = view.scan_dir(number) if scans else view.run_dir(number)
        if run_dir is None or not run_dir.is_dir():
            abort(404, f"round {number} has no run directory here")
        return run_dir

    @app.errorhandler(404)
    def not_found(error: Any) -> tuple[str, int]:
        return render("missing.html", None, message=getattr(error, "description", "")), 404

    @app.errorhandler(FileNotFoundError)
    def no_campaign(error: FileNotFoundError) -> tuple[str, int]:  # CampaignState.read_only: no state yet
        return render("empty.html", None), 404

    return app


@lru_cache(maxsize=1024)
def thumbnail_jpeg(path: str, mtime_ns: int) -> bytes:
    """(cached by file and modification time: a round's Q-scans do not change once rendered)"""
    with Image.open(path) as image:
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=88)
    return out.getvalue()


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """The standard library's WSGI server, a thread per connection (a page loads its images in parallel)."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """No line on stderr per request: the job's terminal shows what the job says."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CampaignPage:
    """The page served on ``host:port`` (0 = a free port) in a background thread, from ``start()`` (or ``with``)
    to ``stop()``."""

    def __init__(self, state_dir: str | Path, name: str, host: str = "127.0.0.1", port: int = 8766) -> None:
        self.state_dir, self.name, self.host, self.port = Path(state_dir), name, host, port
        self._server: WSGIServer | None = None

    def start(self) -> CampaignPage:
        try:
            self._server = make_server(self.host, self.port, create_app(self.state_dir, self.name),
                                       server_class=ThreadingWSGIServer, handler_class=QuietHandler)
        except OSError as err:
            raise RuntimeError(f"cannot serve the campaign page on {self.host}:{self.port} ({err.strerror}); "
                               "choose another port with job.page_port (0 = any free port)") from None
        threading.Thread(target=self._server.serve_forever, name=f"page:{self._server.server_port}",
                         daemon=True).start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the campaign page is not being served: call start() first")
        return f"http://{self.host}:{self._server.server_port}/"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> CampaignPage:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
