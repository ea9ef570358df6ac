import { MSG } from './codes.ts';
import { FrameSplitter, readCString } from './frame-splitter.ts';
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

/** The whole message frames held in one buffer (none is longer than the buffer), as views of it. */
const framesIn = (frames: Buffer) => new FrameSplitter(frames.length).split(frames);

/** The ParameterStatus values among whole message frames. */
function readParameterStatuses(frames: Buffer): Map<string, string> {
  const values = new Map<string, string>();
  for (const frame of framesIn(frames)) {
    if (frame[0] !== MSG.parameterStatus) continue;
    const name = readCString(frame, 5);
    values.set(name.value, readCString(frame, name.next).value);
  }
  return values;
}

/** The frames of one type among whole message frames, in one buffer. */
export function framesOfType(frames: Buffer, type: number): Buffer {
  return Buffer.concat(framesIn(frames).filter((frame) => frame[0] === type));
}
