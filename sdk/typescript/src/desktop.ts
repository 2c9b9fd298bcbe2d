/**
 * The graphical desktop of a sandbox created with `desktop: true` (`sbx.desktop`): take
 * screenshots, move and click the mouse, type and press keys, start graphical programs, list
 * their windows, and share a live view of the screen.
 *
 * ```ts
 * await using sbx = await Sandbox.create({ desktop: true });
 * await sbx.desktop.launch("xterm");
 * await sbx.desktop.click(100, 100);
 * await sbx.desktop.type("echo hi");
 * await sbx.desktop.press("Return");
 * const png = await sbx.desktop.screenshot(); // Uint8Array
 * ```
 *
 * Coordinates are pixels from the top-left corner of the screen (`0 <= x < width`). Every
 * call on a sandbox without a desktop throws {@link BadRequestError}.
 *
 * @module
 */

import { CommandHandle } from "./commands.js";
import type { CallOptions, Transport } from "./http.js";

/** The screen of a desktop sandbox, as `desktop` of `Sandbox.create` (each optional). */
export interface DesktopOptions {
  /** Width in pixels, 320 to 3840 (default 1280). */
  width?: number;
  /** Height in pixels, 240 to 2160 (default 800). */
  height?: number;
  /** Dots per inch, 48 to 384 (default 96). */
  dpi?: number;
}

/** A mouse button. */
export type MouseButton = "left" | "middle" | "right";

/** Which way {@link Desktop.scroll} turns the wheel: `up` shows earlier content. */
export type ScrollDirection = "up" | "down";

/** Options of the clicks, {@link Desktop.drag}, {@link Desktop.mouseDown} and {@link Desktop.mouseUp}. */
export interface MouseButtonOptions extends CallOptions {
  /** Default `left`. */
  button?: MouseButton;
}

/** Options of {@link Desktop.scroll}. */
export interface ScrollOptions extends CallOptions {
  /** Default `down`. */
  direction?: ScrollDirection;
  /** Wheel clicks, 1 to 100 (default 1). */
  amount?: number;
  /** Where to move the pointer first (with `y`); where it is when absent. */
  x?: number;
  y?: number;
}

/** Options of {@link Desktop.launch}. */
export interface LaunchOptions extends CallOptions {
  /** Working directory (default `/home/user`). */
  cwd?: string;
  /** Extra environment variables (`DISPLAY` is set already). */
  env?: Record<string, string>;
}

/** Where the pointer is. */
export interface CursorPosition {
  x: number;
  y: number;
}

/** A top-level window, as {@link Desktop.windows} lists them. */
export interface DesktopWindow {
  /** Its X window id. */
  id: number;
  title: string;
  /** Its class (`XTerm`, `Chromium`…): `class` on the wire. */
  className: string;
  /** Its position on the screen. */
  x: number;
  y: number;
  /** Its size in pixels. */
  width: number;
  height: number;
  /** Whether it has the keyboard focus. */
  focused: boolean;
}

/** A live view just started by {@link Desktop.stream}. */
export interface DesktopStream {
  /** A noVNC page through the node's proxy; it asks for `password` (or takes `&password=`). */
  url: string;
  /** The VNC password (8 characters). */
  password: string;
  /** Whether viewers can only watch. */
  viewOnly: boolean;
}

/** The live view running on a desktop (the node never echoes its password back). */
export interface DesktopStreamInfo {
  url: string;
  viewOnly: boolean;
}

/** A sandbox's desktop, as {@link Desktop.info} describes it. */
export interface DesktopInfo {
  /** The X display, `:0` (`DISPLAY` of every process of the sandbox). */
  display: string;
  /** The screen's size in pixels. */
  width: number;
  height: number;
  dpi: number;
  /** The live view while one runs. */
  stream: DesktopStreamInfo | null;
}

interface WireWindow {
  id: number;
  title: string;
  class: string;
  x: number;
  y: number;
  width: number;
  height: number;
  focused: boolean;
}

interface WireDesktop {
  display: string;
  width: number;
  height: number;
  dpi: number;
  stream: { url: string; view_only: boolean } | null;
}

/** The body of `POST …/desktop/mouse`. */
interface MouseRequest {
  action: "move" | "click" | "double_click" | "down" | "up" | "drag" | "scroll";
  x?: number;
  y?: number;
  button?: MouseButton;
  to_x?: number;
  to_y?: number;
  direction?: ScrollDirection;
  amount?: number;
}

/** `sbx.desktop`. */
export class Desktop {
  constructor(
    private readonly transport: Transport,
    private readonly path: string,
  ) {}

  /** The display, the screen's size and dpi, and the live view if one runs. */
  async info(options?: CallOptions): Promise<DesktopInfo> {
    const w = await this.transport.json<WireDesktop>("GET", `${this.path}/desktop`, undefined, options);
    return {
      display: w.display,
      width: w.width,
      height: w.height,
      dpi: w.dpi,
      stream: w.stream ? { url: w.stream.url, viewOnly: w.stream.view_only } : null,
    };
  }

  /** The whole screen as PNG bytes. */
  async screenshot(options?: CallOptions): Promise<Uint8Array> {
    return this.transport.bytes("GET", `${this.path}/desktop/screenshot`, "image/png", options);
  }

  /** Clicks `button` at `x`, `y` (both or neither: where the pointer is). */
  async click(x?: number, y?: number, options: MouseButtonOptions = {}): Promise<void> {
    await this.mouse({ action: "click", x, y, button: options.button }, options);
  }

  /** Clicks twice at `x`, `y` (both or neither: where the pointer is). */
  async doubleClick(x?: number, y?: number, options: MouseButtonOptions = {}): Promise<void> {
    await this.mouse({ action: "double_click", x, y, button: options.button }, options);
  }

  /** Clicks the right button at `x`, `y` (both or neither: where the pointer is). */
  async rightClick(x?: number, y?: number, options?: CallOptions): Promise<void> {
    await this.mouse({ action: "click", x, y, button: "right" }, options);
  }

  /** Moves the pointer to `x`, `y`. */
  async move(x: number, y: number, options?: CallOptions): Promise<void> {
    await this.mouse({ action: "move", x, y }, options);
  }

  /** Presses `button` at `x`, `y`, moves to `toX`, `toY` and releases it. */
  async drag(x: number, y: number, toX: number, toY: number, options: MouseButtonOptions = {}): Promise<void> {
    await this.mouse({ action: "drag", x, y, to_x: toX, to_y: toY, button: options.button }, options);
  }

  /** Presses `button` where the pointer is, and holds it (see {@link Desktop.mouseUp}). */
  async mouseDown(options: MouseButtonOptions = {}): Promise<void> {
    await this.mouse({ action: "down", button: options.button }, options);
  }

  /** Releases `button` where the pointer is. */
  async mouseUp(options: MouseButtonOptions = {}): Promise<void> {
    await this.mouse({ action: "up", button: options.button }, options);
  }

  /** Turns the wheel `amount` clicks `direction`, after moving the pointer to `x`, `y` when given. */
  async scroll(options: ScrollOptions = {}): Promise<void> {
    const { direction, amount, x, y } = options;
    await this.mouse({ action: "scroll", direction, amount, x, y }, options);
  }

  /** Where the pointer is. */
  async cursor(options?: CallOptions): Promise<CursorPosition> {
    const { x, y } = await this.transport.json<CursorPosition>("GET", `${this.path}/desktop/cursor`, undefined, options);
    return { x, y };
  }

  /**
   * Types `text` as is: any Unicode, up to 10,000 characters. Keys that are not characters
   * (`Return`, `ctrl+c`) are for {@link Desktop.press}.
   */
  async type(text: string, options?: CallOptions): Promise<void> {
    await this.transport.call("POST", `${this.path}/desktop/keyboard`, { text }, options);
  }

  /**
   * Presses each key combination in turn: X keysym names (`Return`, `Tab`, `BackSpace`,
   * `F5`, `a`…) joined by `+` with modifiers (`ctrl`, `shift`, `alt`, `super`).
   *
   * ```ts
   * await sbx.desktop.press("ctrl+a", "Delete");
   * ```
   */
  async press(...keys: string[]): Promise<void> {
    if (keys.length === 0) throw new TypeError('press needs at least one key, e.g. press("Return")');
    await this.transport.call("POST", `${this.path}/desktop/keyboard`, { keys });
  }

  /**
   * Starts a graphical program (`/bin/sh -c cmd`, on the display) in the background: a
   * background command like those of `sbx.commands`.
   */
  async launch(cmd: string, options: LaunchOptions = {}): Promise<CommandHandle> {
    const body = { cmd, cwd: options.cwd, env: options.env };
    const { command_id, pid } = await this.transport.json<{ command_id: string; pid: number }>(
      "POST",
      `${this.path}/desktop/launch`,
      body,
      options,
    );
    return new CommandHandle(this.transport, `${this.path}/commands/${encodeURIComponent(command_id)}`, command_id, pid);
  }

  /** The top-level windows, from the bottom of the stack to the top. */
  async windows(options?: CallOptions): Promise<DesktopWindow[]> {
    const { windows } = await this.transport.json<{ windows: WireWindow[] }>("GET", `${this.path}/desktop/windows`, undefined, options);
    return windows.map((w) => ({
      id: w.id,
      title: w.title,
      className: w.class,
      x: w.x,
      y: w.y,
      width: w.width,
      height: w.height,
      focused: w.focused,
    }));
  }

  /**
   * Starts a live view of the screen: a noVNC page that asks for the password; with
   * `viewOnly` viewers cannot send input. A second call replaces the view (a new password;
   * the old viewers are cut).
   */
  async stream(options: { viewOnly?: boolean } & CallOptions = {}): Promise<DesktopStream> {
    const body = { view_only: options.viewOnly ?? false };
    const w = await this.transport.json<{ url: string; password: string; view_only: boolean }>(
      "POST",
      `${this.path}/desktop/stream`,
      body,
      options,
    );
    return { url: w.url, password: w.password, viewOnly: w.view_only };
  }

  /** Stops the live view and cuts its viewers ({@link NotFoundError} if none runs). */
  async stopStream(options?: CallOptions): Promise<void> {
    await this.transport.call("DELETE", `${this.path}/desktop/stream`, undefined, options);
  }

  private async mouse(body: MouseRequest, options?: CallOptions): Promise<void> {
    await this.transport.call("POST", `${this.path}/desktop/mouse`, body, options);
  }
}
