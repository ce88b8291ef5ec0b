export default function Page() {
  return <h1>hello from node-next-standalone</h1>;
}
