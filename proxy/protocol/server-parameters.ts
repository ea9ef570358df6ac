import { MSG } from './codes.ts';
import { readCString } from './frame-splitter.ts';
import { parameterStatus } from './messages.ts';

/**
 * A backend's ParameterStatus values (name → value, in the order reported): those of its startup
 * answer, read from its frames only when first asked for, and the changes it reported since. An
 * idle session holds its startup answer as one buffer and no table until a setting changes or
 * its backend serves another client.
 */
export class ServerParameters {
  private values: Map<string, string> | undefined;

  /** `greeting`: the ParameterStatus (and other) frames of the startup answer, in one buffer. */
  constructor(private readonly greeting: Buffer) {}

  set(name: string, value: string): void {
    this.all().set(name, value);
  }

  all(): Map<string, string> {
    return (this.values ??= readParameterStatuses(this.greeting));
  }

  /** ParameterStatus frames of the values now, as a new client of the backend is told them. */
  frames(): Buffer[] {
    return [...this.all()].map(([name, value]) => parameterStatus(name, value));
  }
}

/** The ParameterStatus values among whole message frames. */
function readParameterStatuses(frames: Buffer): Map<string, string> {
  const values = new Map<string, string>();
  for (let at = 0; at + 5 <= frames.length; at += 1 + frames.readUInt32BE(at + 1)) {
    if (frames[at] !== MSG.parameterStatus) continue;
    const name = readCString(frames, at + 5);
    values.set(name.value, readCString(frames, name.next).value);
  }
  return values;
}

/** The frames of one type among whole message frames, in one buffer. */
export function framesOfType(frames: Buffer, type: number): Buffer {
  const picked: Buffer[] = [];
  for (let at = 0; at + 5 <= frames.length;) {
    const end = at + 1 + frames.readUInt32BE(at + 1);
    if (frames[at] === type) picked.push(frames.subarray(at, end));
    at = end;
  }
  return Buffer.concat(picked);
}
