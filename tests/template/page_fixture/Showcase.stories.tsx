import { Showcase } from "./Showcase";

// One arg per kind of control Storybook's panel offers.
const meta = {
  title: "Page/Showcase",
  component: Showcase,
  args: {
    label: "Hello",
    count: 2,
    level: 5,
    active: false,
    size: "md",
    tone: "plain",
    tags: ["a"],
    colour: "#ff0000",
    config: { gap: 4 },
    hint: "shown when active",
    secret: "kept",
    internal: "kept",
  },
  argTypes: {
    level: { control: { type: "range", min: 0, max: 10, step: 1 } },
    size: { control: { type: "inline-radio", labels: { sm: "Small", md: "Medium", lg: "Large" } }, options: ["sm", "md", "lg"] },
    tone: { control: "select", options: ["plain", "loud"], mapping: { plain: "400", loud: "700" } },
    tags: { control: "check", options: ["a", "b", "c"] },
    colour: { control: "color" },
    when: { control: "date" },
    hint: { if: { arg: "active" } },
    secret: { control: false },
    internal: { table: { disable: true } },
  },
};

export default meta;

export const Default = {};

export const Other = { args: { label: "Other" } };
