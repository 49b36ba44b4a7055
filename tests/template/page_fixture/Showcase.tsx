// A component that draws every prop it gets, for the tests of the controls panel.
export function Showcase(props: {
  label: string;
  colour?: string;
  tone?: string;
  [name: string]: unknown;
}) {
  return (
    <div>
      <p data-testid="showcase-label" style={{ color: props.colour, fontWeight: props.tone }}>
        {props.label}
      </p>
      <pre data-testid="showcase-props">{JSON.stringify(props)}</pre>
    </div>
  );
}
