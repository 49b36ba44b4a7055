import { useId, useState } from 'react';

export interface InputProps {
  label: string;
  placeholder?: string;
  defaultValue?: string;
  /** Shown under the field, which is then marked invalid. */
  error?: string;
  type?: 'text' | 'email' | 'password';
}

export function Input({ label, placeholder, defaultValue = '', error, type = 'text' }: InputProps) {
  const id = useId();
  const [value, setValue] = useState(defaultValue);
  return (
    <div className={error ? 'uk-field uk-field--invalid' : 'uk-field'}>
      <label className="uk-field__label" htmlFor={id}>
        {label}
      </label>
      <input
        id={id}
        className="uk-field__input"
        type={type}
        placeholder={placeholder}
        value={value}
        aria-invalid={error ? true : undefined}
        onChange={(event) => setValue(event.target.value)}
      />
      {error && <span className="uk-field__error">{error}</span>}
    </div>
  );
}
