// The `blob:` URLs the page shows pictures from. Each keeps its picture in the browser's
// memory until it is revoked, so every URL made for the conversation on screen is noted
// here and revoked together when the person opens another one; a picture taken off the
// message box before it was sent is revoked at once.

const made = new Set<string>();

/** A URL to show `blob` from, until the conversation on screen changes. */
export function blobUrl(blob: Blob): string {
  const url = URL.createObjectURL(blob);
  made.add(url);
  return url;
}

/** Frees one picture the page no longer shows. */
export function revokeBlobUrl(url: string): void {
  if (made.delete(url)) URL.revokeObjectURL(url);
}

/** Frees every picture of the conversation left. */
export function revokeBlobUrls(): void {
  for (const url of made) URL.revokeObjectURL(url);
  made.clear();
}
