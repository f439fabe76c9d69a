// The canvas section: the rooms this node keeps, newest first, and a form that opens a
// room by name (the whiteboard itself is the canvas page at /canvas/{room}).

import { ApiFailure, getJson } from "./api";
import { language, t } from "./i18n";

interface RoomSummary {
  room: string;
  clients: number;
  bytes: number;
  updated_at_ms: number;
}

const ROOM_NAME = /^[A-Za-z0-9._-]{1,128}$/;

function roomLink(summary: RoomSummary): HTMLLIElement {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.href = "/canvas/" + encodeURIComponent(summary.room);
  link.textContent = summary.room;
  const details = document.createElement("span");
  details.className = "room-details";
  const when = new Date(summary.updated_at_ms).toLocaleString(language);
  details.textContent = [
    t("roomClients", { count: summary.clients }),
    t("roomUpdated", { when }),
    t("roomSize", { kib: Math.ceil(summary.bytes / 1024) }),
  ].join(" · ");
  item.append(link, details);
  return item;
}

/**
 * Fills `list` with the node's rooms, or says why it could not; true when the node wants
 * the access token first.
 */
export async function showRooms(list: HTMLElement, problem: HTMLElement): Promise<boolean> {
  try {
    const { rooms } = await getJson<{ rooms: RoomSummary[] }>("/api/v1/canvas");
    rooms.sort((a, b) => b.updated_at_ms - a.updated_at_ms);
    list.replaceChildren(...rooms.map(roomLink));
    problem.hidden = rooms.length > 0;
    problem.textContent = rooms.length > 0 ? "" : t("roomsEmpty");
    return false;
  } catch (error) {
    const message = error instanceof ApiFailure ? error.message : String(error);
    problem.hidden = false;
    problem.textContent = t("roomsLoadFailed", { message });
    return error instanceof ApiFailure && error.status === 401;
  }
}

/** Opens the room typed into `form`'s input when it is a valid room name. */
export function openRoomOnSubmit(form: HTMLFormElement, input: HTMLInputElement): void {
  input.pattern = ROOM_NAME.source.slice(1, -1);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!ROOM_NAME.test(name)) {
      input.reportValidity();
      return;
    }
    location.assign("/canvas/" + encodeURIComponent(name));
  });
}
