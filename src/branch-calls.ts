/** What a partner asks of a database's branches; a call that changes its data runs where the database is placed. */

export interface NewBranch {
  name: string;
  parent?: string;
  at?: string;
}

/** A call that changes a database's data, run by the node that holds it (forwarded there in a fleet). */
export type BranchCall =
  | { action: 'create'; partnerId: string; databaseId: string; input: NewBranch }
  | { action: 'delete'; partnerId: string; databaseId: string; name: string }
  | { action: 'reset'; partnerId: string; databaseId: string; name: string }
  | { action: 'restore'; partnerId: string; databaseId: string; input: { at: string; branch?: string } };
