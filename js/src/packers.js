// Packers by name, as the Python side names them (sente.packers.PACKER_NAMES): edn, transit, msgpack, and
// each wrapped in Sente's gzip ("msgpack+gzip"...). A packer is {name, binary, pack, unpack}; pack and unpack
// may return promises (the gzip wrapper's do), and binary ones make and read bytes (Uint8Array).

import { PACKERS } from "./codec.js";
import { gzipPacker, msgpackPacker } from "./msgpack.js";

const BARE = { ...PACKERS, msgpack: msgpackPacker };

export function getPacker(packer) {
  if (packer === undefined) return BARE.edn;
  if (packer && typeof packer.pack === "function") return packer;
  const [inner, wrapper, ...rest] = String(packer).split("+");
  if (BARE[inner] && rest.length === 0 && (wrapper === undefined || wrapper === "gzip")) {
    return wrapper ? gzipPacker(BARE[inner]) : BARE[inner];
  }
  throw new TypeError(`packer: one of ${Object.keys(BARE).join(", ")} (each also +gzip) or {pack, unpack}, got ${packer}`);
}
