/**
 * A Server-Sent Events parser over a fetch `Response` body (a `ReadableStream` of bytes),
 * written by hand so it runs wherever fetch does.
 *
 * @module
 */

/** One event of the stream. */
export interface SseEvent {
  /** The `event:` field (`message` when absent). */
  event: string;
  /** The `data:` lines, joined with newlines. */
  data: string;
}

/**
 * Yields the events of `body` as they arrive. Comments (keep-alives) are skipped. Returning
 * early (a `break` in `for await`) cancels the body, which closes the connection.
 */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() + "\n" : decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = lineEnd(buffer)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(buffer[newline] === "\r" && buffer[newline + 1] === "\n" ? newline + 2 : newline + 1);
        if (line === "") {
          if (data.length > 0) yield { event: event || "message", data: data.join("\n") };
          event = "";
          data = [];
          continue;
        }
        const [field, value] = splitField(line);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (done) return;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Where the first line ending (`\n`, `\r\n` or `\r`) of `text` starts, or -1. */
function lineEnd(text: string): number {
  const n = text.indexOf("\n");
  const r = text.indexOf("\r");
  if (r < 0) return n;
  // A lone `\r` at the end may be the first half of `\r\n`: wait for more.
  if (r === text.length - 1) return n >= 0 && n < r ? n : -1;
  return n < 0 ? r : Math.min(n, r);
}

/** `field: value` → [field, value] (one leading space of the value dropped); a comment → [""]. */
function splitField(line: string): [string, string] {
  if (line.startsWith(":")) return ["", ""];
  const colon = line.indexOf(":");
  if (colon < 0) return [line, ""];
  const value = line.slice(colon + 1);
  return [line.slice(0, colon), value.startsWith(" ") ? value.slice(1) : value];
}
