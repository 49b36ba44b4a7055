export { Button } from './components/Button/Button';
export type { ButtonProps } from './components/Button/Button';
export { Card } from './components/Card/Card';
export type { CardProps } from './components/Card/Card';
export { Input } from './components/Input/Input';
export type { InputProps } from './components/Input/Input';
export { Modal } from './components/Modal/Modal';
export type { ModalProps } from './components/Modal/Modal';
