// Who is calling. Authentication (bearer tokens, roles) lands with the security issue (#9);
// until then every caller is the dev-mode principal "anonymous", and the audit log says so.

import type { HandlerContext } from "@connectrpc/connect";

export const ANONYMOUS = "anonymous";

export function principalOf(_ctx: HandlerContext): string {
  return ANONYMOUS;
}
