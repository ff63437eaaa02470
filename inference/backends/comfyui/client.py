"""The HTTP and websocket side of one ComfyUI server (its public API, nothing more).

HTTP goes through urllib (no dependency); the websocket through websocket-client. Every failure
becomes one sentence: `ServerUnavailable` when the server cannot be reached before anything was
sent, `ServerLost` when the connection drops with a job on it (the pool re-runs that job on
another server), `RequestError` when the server refuses the graph.

Websocket frames (ComfyUI 0.3.x): text frames are JSON `{"type", "data"}` (`status`,
`execution_start`, `executing`, `progress`, `executed`, `execution_success`,
`execution_interrupted`, `execution_error`); binary frames start with a big-endian u32 event type,
1 being a preview image: a u32 format (1 JPEG, 2 PNG) and the encoded image.
"""

from __future__ import annotations

import io
import json
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

import numpy as np

from inference.api import InferenceError, RequestError
from inference.backends.comfyui.graph import Upload

HTTP_TIMEOUT_S = 30.0
PREVIEW_IMAGE_EVENT = 1
MAX_ERROR_CHARS = 300


class ServerUnavailable(InferenceError):
    """The server could not be reached (nothing of the job was sent)."""


class ServerLost(InferenceError):
    """The connection to the server broke while it had the job."""


@dataclass(frozen=True)
class ServerAddress:
    """A ComfyUI server as the settings name it: its URL and what authenticates us there."""

    url: str
    token: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise RequestError(f"The backend address {self.url!r} is not an http:// or https:// URL.")
        object.__setattr__(self, "url", self.url.rstrip("/"))

    @property
    def websocket_url(self) -> str:
        parsed = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parsed.scheme == "https" else "ws"
        return urllib.parse.urlunsplit((scheme, parsed.netloc, parsed.path + "/ws", "", ""))

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


@dataclass
class SocketMessage:
    kind: str  # a JSON message's type, or "preview" for a binary preview frame
    data: dict = field(default_factory=dict)
    image: np.ndarray | None = None  # preview frames: HxWx3 uint8


def decode_png(data: bytes, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError):
        raise InferenceError(f"The ComfyUI server sent {what} that is not an image.") from None


class ComfyClient:
    """One server: JSON calls, uploads, downloads, and the websocket of one client id."""

    def __init__(self, address: ServerAddress, *, timeout: float = HTTP_TIMEOUT_S):
        self.address = address
        self.timeout = timeout

    @property
    def url(self) -> str:
        return self.address.url

    # ---- HTTP ----

    def call(self, path: str, *, body: bytes | None = None, content_type: str = "application/json",
             lost: bool = False) -> bytes:
        """One HTTP request; `lost` says the job is already on the server (so a failure is ServerLost)."""
        headers = self.address.request_headers()
        if body is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, headers=headers,
                                         method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise self.refused(path, error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if lost:
                raise ServerLost(f"The ComfyUI server at {self.url} stopped answering mid-job ({reason}).") from None
            raise ServerUnavailable(f"The ComfyUI server at {self.url} cannot be reached ({reason}).") from None

    def refused(self, path: str, error: urllib.error.HTTPError) -> InferenceError:
        detail = error.read().decode("utf-8", "replace")
        try:
            payload = json.loads(detail)
            message = payload.get("error", {}).get("message") or detail
            for node_error in (payload.get("node_errors") or {}).values():
                for item in node_error.get("errors", []):
                    message = f"{message} {item.get('message', '')}: {item.get('details', '')}".strip()
        except (ValueError, AttributeError):
            message = detail
        message = " ".join(str(message).split())[:MAX_ERROR_CHARS]
        if error.code in (401, 403):
            return ServerUnavailable(f"The ComfyUI server at {self.url} refused our credentials (HTTP {error.code}).")
        return RequestError(f"The ComfyUI server at {self.url} refused {path} (HTTP {error.code}): {message}")

    def get_json(self, path: str, *, lost: bool = False):
        return self.parse(self.call(path, lost=lost), path)

    def post_json(self, path: str, payload: dict, *, lost: bool = False):
        data = self.call(path, body=json.dumps(payload).encode(), lost=lost)
        return self.parse(data, path) if data.strip() else {}

    def parse(self, data: bytes, path: str):
        try:
            return json.loads(data)
        except ValueError:
            raise ServerUnavailable(f"The server at {self.url} answered {path} with something that is not"
                                    " ComfyUI's JSON.") from None

    def object_info(self) -> dict:
        info = self.get_json("/object_info")
        if not isinstance(info, dict) or "CheckpointLoaderSimple" not in info:
            raise ServerUnavailable(f"The server at {self.url} does not list ComfyUI's nodes at /object_info.")
        return info

    def upload(self, item: Upload) -> None:
        boundary = f"collagen-{uuid.uuid4().hex}"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{item.name}"\r\n'
            "Content-Type: image/png\r\n\r\n".encode() + item.data + b"\r\n",
            f'--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n'.encode(),
            f"--{boundary}--\r\n".encode(),
        ]
        answer = self.parse(self.call("/upload/image", body=b"".join(parts),
                                      content_type=f"multipart/form-data; boundary={boundary}"), "/upload/image")
        if answer.get("name") != item.name or answer.get("subfolder", ""):
            raise InferenceError(f"The ComfyUI server at {self.url} stored the upload {item.name} under another name.")

    def queue_prompt(self, graph: dict, client_id: str) -> str:
        answer = self.post_json("/prompt", {"prompt": graph, "client_id": client_id})
        prompt_id = answer.get("prompt_id")
        if not prompt_id:
            raise RequestError(f"The ComfyUI server at {self.url} did not queue the job: {str(answer)[:MAX_ERROR_CHARS]}")
        return str(prompt_id)

    def history(self, prompt_id: str) -> dict:
        return self.get_json(f"/history/{urllib.parse.quote(prompt_id)}", lost=True).get(prompt_id, {})

    def view(self, image: dict) -> bytes:
        query = urllib.parse.urlencode({"filename": image.get("filename", ""), "subfolder": image.get("subfolder", ""),
                                        "type": image.get("type", "output")})
        return self.call(f"/view?{query}", lost=True)

    def cancel(self, prompt_id: str) -> None:
        """Take the prompt out of the queue, and interrupt it if it is the one running."""
        self.post_json("/queue", {"delete": [prompt_id]}, lost=True)
        self.post_json("/interrupt", {"prompt_id": prompt_id}, lost=True)

    # ---- websocket ----

    def open_socket(self, client_id: str) -> ServerSocket:
        import websocket

        headers = [f"{name}: {value}" for name, value in self.address.request_headers().items()]
        try:
            connection = websocket.create_connection(f"{self.address.websocket_url}?clientId={client_id}",
                                                     timeout=self.timeout, header=headers)
        except (websocket.WebSocketException, OSError) as error:
            raise ServerUnavailable(f"The ComfyUI server at {self.url} refused its websocket ({error}).") from None
        return ServerSocket(connection, self.url)


class ServerSocket:
    """The websocket of one client id: `receive` gives the next message, None after `wait_s` of silence."""

    def __init__(self, connection, url: str):
        self.connection = connection
        self.url = url

    def receive(self, wait_s: float) -> SocketMessage | None:
        import websocket

        self.connection.settimeout(wait_s)
        try:
            opcode, payload = self.connection.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError) as error:
            raise ServerLost(f"The connection to the ComfyUI server at {self.url} was lost mid-job ({error}).") from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ServerLost(f"The ComfyUI server at {self.url} closed the connection mid-job.")
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return self.binary_message(payload)
        try:
            message = json.loads(payload)
        except ValueError:
            return SocketMessage(kind="unreadable")
        return SocketMessage(kind=str(message.get("type", "")), data=message.get("data") or {})

    def binary_message(self, payload: bytes) -> SocketMessage:
        if len(payload) < 8:
            return SocketMessage(kind="unreadable")
        event, _image_format = struct.unpack(">II", payload[:8])
        if event != PREVIEW_IMAGE_EVENT:
            return SocketMessage(kind=f"binary-{event}")
        try:
            image = decode_png(payload[8:], "a preview")  # JPEG or PNG: Pillow reads either
        except InferenceError:
            return SocketMessage(kind="unreadable")
        return SocketMessage(kind="preview", image=image)

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:  # noqa: BLE001 - closing a broken socket has nothing left to report
            pass
