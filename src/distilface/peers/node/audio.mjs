// Shared by the drivers: command-line parsing, audio file reading, one JSON line per result.
//
// Audio files: a WAV (PCM 16-bit or IEEE float 32-bit, any channel count, mixed down to mono)
// or a headerless little-endian float32 mono file, whose rate must be given with --rate.

import { readFileSync } from "node:fs";

/** Version of a package installed in this folder's node_modules (read from its package.json:
 * packages with an "exports" map do not export it). */
export function packageVersion(name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")).version;
}

/** argv -> { options: {name: value}, files: [...] } for `--name value` options. */
export function parseArgs(argv, defaults) {
  const options = { ...defaults };
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const name = a.slice(2);
      if (!(name in defaults)) throw new Error(`unknown option ${a}`);
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      options[name] = Number(argv[++i]);
      if (!Number.isFinite(options[name])) throw new Error(`${a}: not a number`);
    } else {
      files.push(a);
    }
  }
  if (!files.length) throw new Error("no audio files given");
  return { options, files };
}

/** -> { samples: Float32Array (mono, [-1, 1]), rate: Hz } */
export function readAudio(path, rate) {
  const buf = readFileSync(path);
  if (buf.length >= 12 && buf.toString("ascii", 0, 4) === "RIFF" && buf.toString("ascii", 8, 12) === "WAVE") {
    return readWav(buf, path);
  }
  if (!(rate > 0)) throw new Error(`${path}: not a WAV file, and no --rate for raw float32`);
  if (buf.length % 4) throw new Error(`${path}: raw float32 file size ${buf.length} is not a multiple of 4`);
  const samples = new Float32Array(buf.length / 4);
  for (let i = 0; i < samples.length; i++) samples[i] = buf.readFloatLE(4 * i);
  return { samples, rate };
}

function readWav(buf, path) {
  let fmt = null;
  let pos = 12;
  while (pos + 8 <= buf.length) {
    const id = buf.toString("ascii", pos, pos + 4);
    const size = buf.readUInt32LE(pos + 4);
    const body = pos + 8;
    if (id === "fmt ") {
      fmt = { format: buf.readUInt16LE(body), channels: buf.readUInt16LE(body + 2),
              rate: buf.readUInt32LE(body + 4), bits: buf.readUInt16LE(body + 14) };
      if (fmt.format === 0xfffe && size >= 26) fmt.format = buf.readUInt16LE(body + 24);  // extensible
    } else if (id === "data") {
      if (!fmt) throw new Error(`${path}: data chunk before fmt chunk`);
      const { format, channels, rate, bits } = fmt;
      const width = bits / 8;
      if (!((format === 1 && bits === 16) || (format === 3 && bits === 32))) {
        throw new Error(`${path}: WAV format ${format}/${bits} bit; use PCM 16-bit or float 32-bit`);
      }
      const frames = Math.floor(Math.min(size, buf.length - body) / (width * channels));
      const samples = new Float32Array(frames);
      for (let i = 0; i < frames; i++) {
        let sum = 0;
        for (let c = 0; c < channels; c++) {
          const at = body + (i * channels + c) * width;
          sum += format === 1 ? buf.readInt16LE(at) / 32768 : buf.readFloatLE(at);
        }
        samples[i] = sum / channels;
      }
      return { samples, rate };
    }
    pos = body + size + (size % 2);
  }
  throw new Error(`${path}: no data chunk`);
}

/** Milliseconds since `start` (a process.hrtime.bigint()). */
export function elapsedMs(start) {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Runs `analyse(file)` for every file and prints one JSON line each; errors go to stderr. */
export async function main(defaults, analyse) {
  let parsed;
  try {
    parsed = parseArgs(process.argv.slice(2), defaults);
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  for (const file of parsed.files) {
    const result = await analyse(file, parsed.options);
    process.stdout.write(JSON.stringify({ file, ...result }) + "\n");
  }
}
