import crypto from 'node:crypto';
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { type ObjectStore, type StoredObject, StoreUnavailableError } from './object-store.ts';
import type { StorageLocation } from './storage-config.ts';

// The release is pinned to one that supports Node 20; its notice about later releases is not for our users.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Objects above this go up in parts (lib-storage), several at once. */
const MULTIPART_FROM = 8 * 1024 * 1024;
const PART_SIZE = 8 * 1024 * 1024;
const DELETE_BATCH = 1000;

/** An S3 store's location (from PGFLEET_STORAGE_URL), and how long one request may take. */
export type S3Location = Extract<StorageLocation, { kind: 's3' }> & { requestTimeoutMs: number };

const notFound = (err: unknown) => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
};

/**
 * Objects in an S3-compatible bucket (AWS S3, MinIO, R2, Ceph RGW) through the AWS SDK. Checksums
 * are computed only where the API requires them: servers that do not understand the SDK's
 * aws-chunked uploads store those bodies with their framing; every object pgfleet writes is
 * sealed and checked on read anyway (sealed-store.ts), and each upload carries its MD5.
 */
export class S3Store implements ObjectStore {
  readonly location: string;
  private readonly client: S3Client;

  constructor(private readonly at: S3Location) {
    this.location = `s3://${at.bucket}/${at.prefix}${at.endpoint ? ` at ${at.endpoint}` : ''}`;
    const config: S3ClientConfig = {
      region: at.region,
      forcePathStyle: at.pathStyle,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      requestHandler: { connectionTimeout: Math.min(5000, at.requestTimeoutMs), requestTimeout: at.requestTimeoutMs, throwOnRequestTimeout: true },
      ...(at.endpoint ? { endpoint: at.endpoint } : {}),
      ...(at.credentials ? { credentials: at.credentials } : {}),
    };
    this.client = new S3Client(config);
  }

  private unavailable(err: unknown): StoreUnavailableError {
    const e = err as { name?: string; message?: string; code?: string };
    return new StoreUnavailableError(this.location, e.code ?? e.name ?? e.message ?? String(err));
  }

  async put(key: string, body: Buffer): Promise<void> {
    const Key = this.at.prefix + key;
    try {
      if (body.length < MULTIPART_FROM) {
        const md5 = crypto.createHash('md5').update(body).digest('base64');
        await this.client.send(new PutObjectCommand({ Bucket: this.at.bucket, Key, Body: body, ContentMD5: md5 }));
      } else {
        // A multipart upload appears only once completed: a crash mid-way leaves no object.
        await new Upload({ client: this.client, params: { Bucket: this.at.bucket, Key, Body: body }, partSize: PART_SIZE, queueSize: 4 }).done();
      }
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  async get(key: string): Promise<Buffer | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.at.bucket, Key: this.at.prefix + key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (err) {
      if (notFound(err)) return undefined;
      throw this.unavailable(err);
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.at.bucket, Prefix: this.at.prefix + prefix, ContinuationToken: token }));
      } catch (err) {
        throw this.unavailable(err);
      }
      for (const o of page.Contents ?? []) yield { key: o.Key!.slice(this.at.prefix.length), size: o.Size ?? 0, modified: o.LastModified ?? new Date() };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH).map((k) => ({ Key: this.at.prefix + k }));
      try {
        const res = await this.client.send(new DeleteObjectsCommand({ Bucket: this.at.bucket, Delete: { Objects: batch, Quiet: true } }));
        const failed = (res.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
        if (failed.length) throw new Error(`${failed.length} objects not deleted (${failed[0]!.Code}: ${failed[0]!.Message})`);
      } catch (err) {
        throw this.unavailable(err);
      }
    }
  }

  close(): void {
    this.client.destroy();
  }
}
