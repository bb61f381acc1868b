// The same trivial function as a Vercel-style handler module (warm).
export function GET() {
  return new Response("hello\n", { headers: { "content-type": "text/plain" } });
}
