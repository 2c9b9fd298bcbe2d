/**
 * Standard base64 for byte arrays with `atob`/`btoa`, which every browser and Node 16+
 * have (no `Buffer`).
 *
 * @module
 */

/** Bytes per `String.fromCharCode` call: small enough for any engine's argument limit. */
const CHUNK = 0x8000;

/** The standard base64 of `bytes`. */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

/** The bytes of standard base64 `text`. */
export function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The UTF-8 bytes of `data`, or `data` itself when it is already bytes. */
export function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}
