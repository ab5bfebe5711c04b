/**
 * prefetch's progress on stderr. On a terminal: one line redrawn in place (a bar over the images,
 * layers and bytes so far), at most every 100 ms. Otherwise (a CI log, a pipe): plain lines, one
 * per blob and per image done, without control characters, since a log keeps every `\r`.
 */
export interface Progress {
  /** Bytes arrived (of a blob or a manifest). */
  bytes(n: number): void;
  blobDone(image: string, digest: string, size: number, layer: boolean): void;
  imageStarted(image: string): void;
  imageDone(image: string): void;
  imageFailed(image: string, cause: string): void;
  /** The last line: the summary. */
  end(summary: string): void;
}

export function createProgress(out: NodeJS.WriteStream, images: number): Progress {
  return out.isTTY ? barProgress(out, images) : lineProgress(out);
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function lineProgress(out: NodeJS.WritableStream): Progress {
  return {
    bytes() {},
    blobDone(image, digest, size, layer) {
      out.write(`${image}: ${layer ? 'layer' : 'config'} ${digest.slice(0, 19)} ${mib(size)}\n`);
    },
    imageStarted() {},
    imageDone(image) {
      out.write(`ok ${image}\n`);
    },
    imageFailed(image, cause) {
      out.write(`FAILED ${image}: ${cause}\n`);
    },
    end(summary) {
      out.write(`${summary}\n`);
    },
  };
}

function barProgress(out: NodeJS.WriteStream, images: number): Progress {
  const WIDTH = 24;
  let done = 0;
  let layers = 0;
  let bytes = 0;
  let current = '';
  let drawn = 0;
  const draw = (force = false) => {
    const now = performance.now();
    if (!force && now - drawn < 100) return;
    drawn = now;
    const filled = Math.round((done / Math.max(1, images)) * WIDTH);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}`;
    const line = `[${bar}] ${done}/${images} images  ${layers} layers  ${mib(bytes)}  ${current}`;
    out.write(`\r\x1b[K${line.slice(0, Math.max(20, (out.columns || 80) - 1))}`);
  };
  /** A line that stays, above the bar. */
  const say = (line: string) => {
    out.write(`\r\x1b[K${line}\n`);
    draw(true);
  };
  return {
    bytes(n) {
      bytes += n;
      draw();
    },
    blobDone(_image, _digest, _size, layer) {
      if (layer) layers++;
      draw();
    },
    imageStarted(image) {
      current = image;
      draw(true);
    },
    imageDone() {
      done++;
      draw(true);
    },
    imageFailed(image, cause) {
      done++;
      say(`FAILED ${image}: ${cause}`);
    },
    end(summary) {
      out.write(`\r\x1b[K${summary}\n`);
    },
  };
}
